using System.CommandLine;
using OnDeviceLlm.Cli.Commands;

var root = new RootCommand("odllm: run large language models on this device.")
{
    ConvertCommand.Create(),
    InfoCommand.Create(),
    TokenizeCommand.Create(),
    LogitsCommand.Create(),
    GenerateCommand.Create(),
    BenchCommand.Create(),
};
return root.Parse(args).Invoke();

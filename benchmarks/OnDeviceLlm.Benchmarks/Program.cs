using System.CommandLine;
using OnDeviceLlm.Benchmarks;
using OnDeviceLlm.Runtime;

var shape = new Option<string>("--synthetic") { Description = "Model shape: gemma-2b or llama-110m (random weights, written once to the temp folder).", Required = true };
var quant = new Option<string>("--quant") { Description = "Weight type shared by both engines: q4, q8, f16, bf16 or f32.", DefaultValueFactory = _ => "q4" };
var threads = new Option<int>("--threads") { Description = "Compute threads for both engines.", DefaultValueFactory = _ => 2 };
var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length, prefilled in one call.", DefaultValueFactory = _ => 1024 };
var genTokens = new Option<int>("--gen-tokens") { Description = "Tokens decoded one at a time.", DefaultValueFactory = _ => 256 };
var repeats = new Option<int>("--repeats") { Description = "Runs per engine to take the median of.", DefaultValueFactory = _ => 3 };
var json = new Option<bool>("--json") { Description = "Print one JSON object instead of a table." };

var peer = new Command("peer", "Run our engine and llama.cpp (LLamaSharp's CPU build) on the same synthetic weights and compare.")
    { shape, quant, threads, promptTokens, genTokens, repeats, json };
peer.SetAction(parse => Guarded(() => PeerBenchmark.Run(new PeerSettings(parse.GetValue(shape)!, parse.GetValue(quant)!,
    parse.GetValue(threads), parse.GetValue(promptTokens), parse.GetValue(genTokens), parse.GetValue(repeats)), parse.GetValue(json))));

// One engine per child process, so each one's peak resident memory and thread pool are its own.
var model = new Option<string>("--model") { Required = true };
var label = new Option<string>("--label") { Required = true };
var engine = new Command("engine", "Internal: measure one engine and print its figures as JSON.") { Hidden = true };
var engineName = new Argument<string>("name");
engine.Add(engineName);
foreach (var o in new Option[] { model, label, threads, promptTokens, genTokens, repeats }) engine.Add(o);
engine.SetAction(parse => Guarded(() => EngineRunner.Run(parse.GetValue(engineName)!, parse.GetValue(model)!, parse.GetValue(label)!,
    parse.GetValue(threads), parse.GetValue(promptTokens), parse.GetValue(genTokens), parse.GetValue(repeats))));

var root = new RootCommand("Benchmarks of the OnDeviceLlm runtime against peers.") { peer, engine };
return root.Parse(args).Invoke();

static int Guarded(Func<int> action)
{
    try
    {
        return action();
    }
    catch (Exception e) when (e is ArgumentException or OnDeviceLlmException or BenchmarkException)
    {
        Console.Error.WriteLine(e.Message);
        return 1;
    }
}

namespace OnDeviceLlm.Runtime;

/// <summary>Base of every error the runtime raises for bad input (files, ids, options).</summary>
public class OnDeviceLlmException : Exception
{
    public OnDeviceLlmException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>A model file (.odlm, safetensors, config.json) is malformed or inconsistent.</summary>
public class ModelFormatException : OnDeviceLlmException
{
    public ModelFormatException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner) { Path = path; Problem = problem; }
    public string Path { get; }
    public string Problem { get; }
}

/// <summary>The checkpoint uses an architecture or a config option this runtime does not implement.</summary>
public class UnsupportedModelException : OnDeviceLlmException
{
    public UnsupportedModelException(string message) : base(message) { }
}

/// <summary>A tokenizer file is missing, malformed or of an unsupported kind.</summary>
public class TokenizerException : OnDeviceLlmException
{
    public TokenizerException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>A request cannot be served: a prompt longer than the context, a token id outside the vocabulary, a bad option.</summary>
public class InferenceException : OnDeviceLlmException
{
    public InferenceException(string message) : base(message) { }
}

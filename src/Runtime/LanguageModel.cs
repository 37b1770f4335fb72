using OnDeviceLlm.Runtime.Compute;
using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Inference;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Runtime;

public sealed record LoadOptions
{
    /// <summary>Storage types for a Hugging Face folder or GGUF file converted on load; ignored for .odlm files.</summary>
    public QuantizationScheme Quantization { get; init; } = QuantizationScheme.Source;
    public KernelBackend Backend { get; init; } = KernelBackend.Auto;
    /// <summary>Compute threads; 0 = the number of physical cores.</summary>
    public int Threads { get; init; }
    /// <summary>
    /// Element type of the sessions' KV caches, on the CPU and on a GPU alike; Auto keeps f32 for f32 models (exact) and
    /// uses f16 for f16, bf16 and quantized ones (half the memory and bandwidth).
    /// </summary>
    public KvCacheType KvCacheType { get; init; } = KvCacheType.Auto;
}

/// <summary>
/// A loaded model: memory-mapped weights, config, tokenizer and the forward pass over them.
/// Thread-safe to share; each conversation gets its own <see cref="InferenceSession"/>.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    private readonly Lazy<TextTokenizer?> _tokenizer;
    private readonly string? _temporaryFile;
    private readonly KvCacheType _kvCacheType;

    private LanguageModel(IModelSource file, IKernels kernels, string source, string? temporaryFile, KernelBackend backend, KvCacheType kvCacheType)
    {
        File = file;
        Kernels = kernels;
        Source = source;
        _temporaryFile = temporaryFile;
        Transformer = new Transformer(file.Config, file, kernels);
        _kvCacheType = kvCacheType == KvCacheType.Auto ? Transformer.DefaultKvCacheType : kvCacheType;
        _tokenizer = new(() => file.Tokenizer.IsEmpty ? null : TextTokenizer.Load(file.Tokenizer));
        if (backend is KernelBackend.Cuda or KernelBackend.Auto) PlaceOnGpu(backend);
    }

    /// <summary>Uploads the weights for <see cref="KernelBackend.Cuda"/>, or tries to for Auto and records why not.</summary>
    private void PlaceOnGpu(KernelBackend backend)
    {
        if (CudaDevices.First is not { } device)
        {
            if (backend == KernelBackend.Cuda)
                throw new OnDeviceLlmException($"The CUDA backend was requested but there is {CudaDevices.UnavailableReason}.");
            BackendFallbackReason = CudaDevices.UnavailableReason;
            return;
        }
        try
        {
            Gpu = new CudaTransformer(Config, File, device);
        }
        catch (CudaException e) when (backend == KernelBackend.Auto)
        {
            BackendFallbackReason = e.Message;
        }
        if (BackendFallbackReason is not null)
            System.Diagnostics.Trace.TraceInformation($"OnDeviceLlm: running {Source} on the CPU ({Kernels.Name}): {BackendFallbackReason}");
    }

    /// <summary>
    /// Opens an .odlm file or a GGUF file in place (memory-mapped), or converts a Hugging Face folder (or a GGUF file
    /// to re-quantize) to a temporary .odlm first.
    /// </summary>
    public static LanguageModel Load(string path, LoadOptions? options = null)
    {
        options ??= new LoadOptions();
        // Before any conversion, which can take long: a GPU that was asked for and is missing is an error at once.
        if (options.Backend == KernelBackend.Cuda && CudaDevices.First is null)
            throw new OnDeviceLlmException($"The CUDA backend was requested but there is {CudaDevices.UnavailableReason}.");
        bool folder = Directory.Exists(path);
        if (folder && !HuggingFaceImporter.IsModelFolder(path))
            throw new ModelFormatException(path, "is a folder without config.json, so not a Hugging Face model.");
        if (!folder && !System.IO.File.Exists(path)) throw new FileNotFoundException($"Model file {path} does not exist.", path);

        // Native kernels own a thread pool, so everything opened here is released if a later step fails.
        var kernels = Compute.Kernels.Create(options.Backend, options.Threads);
        IModelSource? file = null;
        string? temporary = null;
        try
        {
            bool gguf = !folder && GgufFile.IsGguf(path);
            if (gguf && options.Quantization == QuantizationScheme.Source) file = GgufModel.Open(path);
            else if (folder || gguf) (file, temporary) = ConvertToTemporary(path, options.Quantization);
            else file = ModelFile.Open(path);
            return new LanguageModel(file, kernels, path, temporary, options.Backend, options.KvCacheType);
        }
        catch
        {
            file?.Dispose();
            (kernels as IDisposable)?.Dispose();
            if (temporary is not null) System.IO.File.Delete(temporary);
            throw;
        }
    }

    /// <summary>
    /// Converts a Hugging Face folder or a GGUF file to a temporary .odlm and maps it; returns the file name still
    /// to delete, which is null on Unix, where the mapping outlives the name and the copy is unlinked at once.
    /// </summary>
    private static (ModelFile File, string? Temporary) ConvertToTemporary(string path, QuantizationScheme quantization)
    {
        string temporary = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"odllm-{Guid.NewGuid():N}.odlm");
        ModelFile file;
        try
        {
            ModelConverter.Convert(path, temporary, quantization);
            file = ModelFile.Open(temporary);
        }
        catch { System.IO.File.Delete(temporary); throw; }
        if (OperatingSystem.IsWindows()) return (file, temporary);
        System.IO.File.Delete(temporary);
        return (file, null);
    }

    /// <summary>The open model file: an .odlm (<see cref="ModelFile"/>, also for a converted folder) or a GGUF (<see cref="GgufModel"/>).</summary>
    public IModelSource File { get; }
    public ModelConfig Config => File.Config;
    public SpecialTokens Special => File.Special;
    public IKernels Kernels { get; }
    public Transformer Transformer { get; }
    /// <summary>The weights on a CUDA device when the forward pass runs there; null on the CPU.</summary>
    public CudaTransformer? Gpu { get; private set; }
    /// <summary>Why <see cref="KernelBackend.Auto"/> stayed on the CPU ("no CUDA device: …"); null otherwise.</summary>
    public string? BackendFallbackReason { get; private set; }
    /// <summary>Where the forward pass runs: "cuda" or the CPU kernels' name.</summary>
    public string BackendName => Gpu is not null ? "cuda" : Kernels.Name;
    /// <summary>Where the model came from: the .odlm path, the Hugging Face folder or the GGUF file.</summary>
    public string Source { get; }

    /// <summary>The tokenizer embedded in the model, or null for a model converted without one.</summary>
    public TextTokenizer? Tokenizer => _tokenizer.Value;

    public TextTokenizer RequireTokenizer() =>
        Tokenizer ?? throw new TokenizerException($"{Source} has no tokenizer; pass token ids instead of text.");

    /// <summary>
    /// Element type of the KV caches <see cref="CreateSession"/> makes, on the CPU or the GPU: <see cref="LoadOptions.KvCacheType"/>
    /// with Auto resolved by the model's matrix type.
    /// </summary>
    public KvCacheType KvCacheType => _kvCacheType;

    /// <summary>A new sequence; on a GPU it holds device memory until disposed.</summary>
    public InferenceSession CreateSession(int? contextLength = null) =>
        Gpu is not null ? new(Gpu.CreateSequence(contextLength, _kvCacheType)) : new(Transformer, contextLength, _kvCacheType);

    /// <summary>Encodes a prompt, adding BOS when the model's tokenizer config asks for it.</summary>
    public IReadOnlyList<int> EncodePrompt(string text)
    {
        var ids = RequireTokenizer().Encode(text);
        if (!Special.AddBos || Special.Bos is not int bos) return ids;
        return [bos, .. ids];
    }

    public void Dispose()
    {
        Gpu?.Dispose();
        File.Dispose();
        (Kernels as IDisposable)?.Dispose();
        if (_temporaryFile is not null) System.IO.File.Delete(_temporaryFile);
    }
}

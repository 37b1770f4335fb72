using System.Buffers;
using System.Reflection;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Import;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Import.HuggingFace;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;

namespace OnDeviceLlm.Runtime.Conversion;

/// <summary>Writes an imported checkpoint as one .odlm file, tensor by tensor, with bounded memory.</summary>
public static class ModelConverter
{
    public static string ConverterVersion { get; } =
        typeof(ModelConverter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0";

    /// <summary>
    /// Converts a Hugging Face folder or a GGUF file to <paramref name="outputPath"/>; returns one sentence per tensor that could not
    /// take the scheme's type (see <see cref="QuantizationScheme.FallbackNote"/>).
    /// </summary>
    public static IReadOnlyList<string> Convert(string source, string outputPath, QuantizationScheme scheme, IProgress<(int Done, int Total, string Name)>? progress = null)
    {
        using var imported = GgufFile.IsGguf(source) ? GgufImporter.Import(source) : HuggingFaceImporter.Import(source);
        return Write(imported, outputPath, scheme, progress);
    }

    /// <inheritdoc cref="Convert"/>
    public static IReadOnlyList<string> Write(ImportedModel model, string outputPath, QuantizationScheme scheme, IProgress<(int Done, int Total, string Name)>? progress = null)
    {
        var notes = model.Tensors.Select(t => scheme.FallbackNote(t.Name, t.Shape, t.SourceType)).OfType<string>().ToList();
        var tensors = model.Tensors.Select(t =>
        {
            var target = scheme.TargetFor(t.Name, t.Shape, t.SourceType);
            return new TensorToWrite(t.Name, target, t.Shape, stream => WriteTensor(model.Weights, t, target, stream));
        }).ToList();
        ModelWriter.Write(outputPath, model.Config, model.Special, model.Tokenizer,
            new Provenance(model.Source, ConverterVersion, scheme.Name), tensors, progress);
        return notes;
    }

    /// <summary>Streams the slices of a tensor, converting a bounded chunk of rows at a time when the type changes.</summary>
    private static unsafe void WriteTensor(ISourceTensors checkpoint, ImportedTensor tensor, TensorType target, Stream output)
    {
        long cols = tensor.Shape[^1];
        int chunkValues = (int)Math.Max(1 << 20, cols);
        float[] values = ArrayPool<float>.Shared.Rent(chunkValues);
        // One encoder across all pieces: a layout may end with a part that covers every row (int8's scales).
        bool copy = tensor.Pieces.All(p => checkpoint.Get(p.Source).Type == target);
        using var encoder = copy ? null
            : new TensorEncoder(target, tensor.Shape.Length < 2 ? 1 : tensor.Shape[..^1].Aggregate(1L, (a, b) => a * b), (int)cols, output);
        try
        {
            foreach (var piece in tensor.Pieces)
            {
                var source = checkpoint.Get(piece.Source);
                long rowValues = source.Shape.Length <= 1 ? 1 : source.Shape[1..].Aggregate(1L, (a, b) => a * b);
                long rows = piece.Count < 0 ? (source.Shape.Length == 0 ? 1 : source.Shape[0]) : piece.Count;
                long firstValue = piece.Start * rowValues, totalValues = rows * rowValues;
                byte* start = (byte*)source.Data + BytesOf(source.Type, firstValue);
                if (encoder is null)
                {
                    // Copied in pieces: a tensor may exceed the 2 GiB a span can address.
                    for (long offset = 0, length = BytesOf(source.Type, totalValues); offset < length; offset += 1 << 30)
                        output.Write(new ReadOnlySpan<byte>(start + offset, (int)Math.Min(1 << 30, length - offset)));
                    continue;
                }
                // Whole output rows per chunk so row-blocked encodings stay aligned.
                long step = Math.Max(cols, chunkValues / cols * cols);
                for (long done = 0; done < totalValues; done += step)
                {
                    int count = (int)Math.Min(step, totalValues - done);
                    var src = new ReadOnlySpan<byte>(start + BytesOf(source.Type, done), (int)BytesOf(source.Type, count));
                    var chunk = values.AsSpan(0, count);
                    Dequantize.Row(source.Type, src, chunk);
                    encoder!.Write(chunk);
                }
            }
            encoder?.Complete();
        }
        finally
        {
            ArrayPool<float>.Shared.Return(values);
        }
    }

    /// <summary>Bytes of <paramref name="values"/> consecutive values; whole blocks for Q8_0/Q4_0 sources (GGUF), whose rows are block multiples.</summary>
    private static long BytesOf(TensorType type, long values) => TensorTypes.ByteLength(type, [values]);
}

using OnDeviceLlm.Runtime.Model;

namespace OnDeviceLlm.Runtime.Format;

/// <summary>Where a model file came from.</summary>
/// <param name="Quantization">The recipe name: f32, f16, bf16, int8, q8, q4, mixed.</param>
public sealed record Provenance(string Source, string ConverterVersion, string Quantization)
{
    /// <summary>When the file was written. The writer uses the current time when this is null; set it for reproducible output.</summary>
    public DateTimeOffset? Created { get; init; }
}

/// <summary>
/// One tensor for <see cref="ModelWriter"/>. <paramref name="WriteData"/> is called once, when the writer
/// reaches this tensor, and must write exactly <c>TensorTypes.ByteLength(Type, Shape)</c> bytes, so a
/// converter can produce (load, quantize) one tensor at a time.
/// </summary>
public sealed record TensorToWrite(string Name, TensorType Type, long[] Shape, Action<Stream> WriteData);

/// <summary>Writes .odlm files: the header, then each tensor's bytes at a 64-byte aligned offset.</summary>
public static class ModelWriter
{
    /// <summary>
    /// Validates everything, then writes to a temporary file next to <paramref name="path"/> and renames it
    /// into place, so a failure never leaves a half-written model behind. Memory use is bounded by the
    /// header and whatever the callbacks hold, not by the model size.
    /// </summary>
    /// <exception cref="ModelFormatException">The inputs are inconsistent, or a callback wrote the wrong number of bytes.</exception>
    public static void Write(string path, ModelConfig config, SpecialTokens special, TokenizerFiles tokenizer, Provenance provenance,
                             IReadOnlyList<TensorToWrite> tensors, IProgress<(int Done, int Total, string Name)>? progress = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(special);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(provenance);
        ArgumentNullException.ThrowIfNull(tensors);

        ModelValidator.Config(path, config);
        ModelValidator.Special(path, special, config);
        ModelValidator.Tokenizer(path, tokenizer);
        var lengths = new long[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            lengths[i] = ModelValidator.Tensor(path, t.Name, t.Type, t.Shape, ModelFormat.BlockSize(t.Type));
        }
        ModelValidator.TensorSet(path, config, tensors.Select(t => (t.Name, t.Shape)));

        var header = new Header(ModelFormat.Version, config, special, tokenizer,
            provenance with { Created = provenance.Created ?? DateTimeOffset.UtcNow }, Layout(tensors, lengths, dataStart: 0));
        // The header's size does not depend on the offsets (every field is written), so one sizing pass fixes the layout.
        long dataStart = ModelFormat.Align(header.Serialize().Length);
        header = header with { Tensors = Layout(tensors, lengths, dataStart) };
        byte[] headerBytes = header.Serialize();
        if (ModelFormat.Align(headerBytes.Length) != dataStart)
            throw new InvalidOperationException("The model header changed size when the tensor offsets were filled in.");

        string temp = $"{path}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                file.Write(headerBytes);
                for (int i = 0; i < tensors.Count; i++)
                {
                    var entry = header.Tensors[i];
                    Pad(file, (long)entry.Offset);
                    var data = new TensorDataStream(file, path, entry.Name, lengths[i]);
                    tensors[i].WriteData(data);
                    data.CheckComplete();
                    progress?.Report((i + 1, tensors.Count, entry.Name));
                }
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            // Guarded so a missing folder reports itself rather than a failure to delete.
            if (File.Exists(temp)) File.Delete(temp);
            throw;
        }
    }

    private static TensorEntry[] Layout(IReadOnlyList<TensorToWrite> tensors, long[] lengths, long dataStart)
    {
        var entries = new TensorEntry[tensors.Count];
        long offset = dataStart;
        for (int i = 0; i < entries.Length; i++)
        {
            var t = tensors[i];
            entries[i] = new TensorEntry(t.Name, t.Type, t.Shape, ModelFormat.BlockSize(t.Type), (ulong)offset, (ulong)lengths[i]);
            offset = ModelFormat.Align(offset + lengths[i]);
        }
        return entries;
    }

    private static void Pad(FileStream file, long offset)
    {
        Span<byte> zeros = stackalloc byte[ModelFormat.Alignment];
        while (file.Position < offset) file.Write(zeros[..(int)Math.Min(zeros.Length, offset - file.Position)]);
    }

    /// <summary>Passes one tensor's bytes through to the file, refusing any beyond its declared length.</summary>
    private sealed class TensorDataStream(Stream inner, string path, string name, long length) : Stream
    {
        private long _written;

        public void CheckComplete()
        {
            if (_written != length)
                throw new ModelFormatException(path, $"tensor '{name}' wrote {_written} bytes but its type and shape need {length}.");
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (buffer.Length > length - _written)
                throw new ModelFormatException(path, $"tensor '{name}' wrote more than the {length} bytes its type and shape need.");
            inner.Write(buffer);
            _written += buffer.Length;
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void WriteByte(byte value) => Write([value]);
        public override void Flush() { }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

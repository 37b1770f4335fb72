using Google.FlatBuffers;
using OnDeviceLlm.Runtime.Model;
using Fb = OnDeviceLlm.Runtime.Format.Fbs;

namespace OnDeviceLlm.Runtime.Format;

/// <summary>One row of the tensor table as stored, before any validation (values may be out of range).</summary>
internal readonly record struct TensorEntry(string Name, TensorType Type, long[] Shape, uint BlockSize, ulong Offset, ulong ByteLength);

/// <summary>Everything in the FlatBuffers header, as plain objects.</summary>
internal sealed record Header(
    uint FormatVersion, ModelConfig Config, SpecialTokens Special, TokenizerFiles Tokenizer, Provenance Provenance,
    IReadOnlyList<TensorEntry> Tensors)
{
    /// <summary>
    /// The size-prefixed FlatBuffer. Every scalar is written even when it equals its default, so the size
    /// does not depend on the offset values and the writer can lay out the blobs before filling them in.
    /// </summary>
    public byte[] Serialize()
    {
        int tokenizerBytes = 0;
        foreach (var file in Tokenizer.Files.Values) tokenizerBytes += file.Length;
        var builder = new FlatBufferBuilder(64 * 1024 + tokenizerBytes) { ForceDefaults = true };

        var tensors = new Offset<Fb.Tensor>[Tensors.Count];
        for (int i = 0; i < tensors.Length; i++)
        {
            var t = Tensors[i];
            var name = builder.CreateString(t.Name);
            var shape = Fb.Tensor.CreateShapeVectorBlock(builder, Array.ConvertAll(t.Shape, d => unchecked((ulong)d)));
            Fb.Tensor.StartTensor(builder);
            Fb.Tensor.AddName(builder, name);
            Fb.Tensor.AddDtype(builder, (byte)t.Type);
            Fb.Tensor.AddShape(builder, shape);
            Fb.Tensor.AddBlockSize(builder, t.BlockSize);
            Fb.Tensor.AddOffset(builder, t.Offset);
            Fb.Tensor.AddByteLength(builder, t.ByteLength);
            tensors[i] = Fb.Tensor.EndTensor(builder);
        }
        var tensorVector = Fb.Model.CreateTensorsVector(builder, tensors);

        // Sorted so the same inputs give the same bytes whatever the dictionary's order.
        var files = Tokenizer.Files.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f =>
        {
            var name = builder.CreateString(f.Key);
            var bytes = Fb.TokenizerFile.CreateBytesVectorBlock(builder, f.Value);
            return Fb.TokenizerFile.CreateTokenizerFile(builder, name, bytes);
        }).ToArray();
        var tokenizerVector = Fb.Model.CreateTokenizerVector(builder, files);

        var eos = Fb.Special.CreateEosIdsVectorBlock(builder, Special.Eos.ToArray());
        var template = Special.ChatTemplate is null ? default : builder.CreateString(Special.ChatTemplate);
        Fb.Special.StartSpecial(builder);
        Fb.Special.AddBosId(builder, Special.Bos);
        Fb.Special.AddEosIds(builder, eos);
        Fb.Special.AddPadId(builder, Special.Pad);
        Fb.Special.AddAddBos(builder, Special.AddBos);
        if (Special.ChatTemplate is not null) Fb.Special.AddChatTemplate(builder, template);
        var special = Fb.Special.EndSpecial(builder);

        var provenance = Fb.Provenance.CreateProvenance(builder,
            builder.CreateString(Provenance.Source), builder.CreateString(Provenance.ConverterVersion),
            builder.CreateString(Provenance.Quantization), (Provenance.Created ?? DateTimeOffset.UnixEpoch).ToUnixTimeMilliseconds());

        var config = ConfigMapper.Write(builder, Config);

        var root = Fb.Model.CreateModel(builder, FormatVersion, config, special, tokenizerVector, provenance, tensorVector);
        Fb.Model.FinishSizePrefixedModelBuffer(builder, root);
        return builder.SizedByteArray();
    }

    /// <summary>
    /// Reads a header from a bounds-checked buffer: a corrupt offset makes the FlatBuffers accessors throw, which
    /// <see cref="ModelFile"/> turns into a <see cref="ModelFormatException"/>; every list length is checked
    /// against the header size before anything is allocated for it.
    /// </summary>
    public static Header Read(string path, Fb.Model model, int headerBytes)
    {
        var c = model.Config ?? throw Missing(path, "config");
        var s = model.Special ?? throw Missing(path, "special tokens");
        var p = model.Provenance ?? throw Missing(path, "provenance");

        var eos = new int[Count(path, s.EosIdsLength, 4, headerBytes, "EOS id")];
        for (int i = 0; i < eos.Length; i++) eos[i] = s.EosIds(i);
        var special = new SpecialTokens { Bos = s.BosId, Eos = eos, Pad = s.PadId, AddBos = s.AddBos, ChatTemplate = s.ChatTemplate };

        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        for (int i = 0; i < Count(path, model.TokenizerLength, 4, headerBytes, "tokenizer file"); i++)
        {
            var f = model.Tokenizer(i) ?? throw Missing(path, "tokenizer file entry");
            if (!files.TryAdd(f.Name ?? throw Missing(path, "tokenizer file name"), f.GetBytesArray() ?? []))
                throw new ModelFormatException(path, $"the tokenizer file '{f.Name}' is embedded twice.");
        }

        var tensors = new TensorEntry[Count(path, model.TensorsLength, 4, headerBytes, "tensor")];
        for (int i = 0; i < tensors.Length; i++)
        {
            var t = model.Tensors(i) ?? throw Missing(path, "tensor entry");
            var shape = new long[Count(path, t.ShapeLength, 8, headerBytes, "tensor shape")];
            // A dimension above long.MaxValue turns negative here and is rejected as non-positive.
            for (int d = 0; d < shape.Length; d++) shape[d] = unchecked((long)t.Shape(d));
            tensors[i] = new TensorEntry(t.Name ?? throw Missing(path, "tensor name"), (TensorType)t.Dtype, shape, t.BlockSize, t.Offset, t.ByteLength);
        }

        var provenance = new Provenance(p.Source ?? "", p.ConverterVersion ?? "", p.Quantization ?? "")
        {
            Created = DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(p.CreatedUnixMs,
                DateTimeOffset.MinValue.ToUnixTimeMilliseconds(), DateTimeOffset.MaxValue.ToUnixTimeMilliseconds())),
        };
        return new Header(model.FormatVersion, ConfigMapper.Read(path, c, headerBytes), special, new TokenizerFiles(files), provenance, tensors);
    }

    /// <summary>A list length from the header, refused when its entries could not fit in the header at all.</summary>
    internal static int Count(string path, int length, int entryBytes, int headerBytes, string what) =>
        length >= 0 && (long)length * entryBytes <= headerBytes
            ? length
            : throw new ModelFormatException(path, $"the header claims {length} {what} entries, more than its {headerBytes} bytes can hold; the file is corrupt.");

    private static ModelFormatException Missing(string path, string what) =>
        new(path, $"the header has no {what}; the file is corrupt.");
}

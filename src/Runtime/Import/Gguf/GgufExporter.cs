using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Tokenization;

namespace OnDeviceLlm.Runtime.Import.Gguf;

/// <summary>
/// Writes a model file as a GGUF that llama.cpp runs with the very same weights (F32/F16/BF16/Q8_0/Q4_0 bytes are
/// copied), for side-by-side checks and benchmarks. It applies llama.cpp's conventions, the inverse of
/// <see cref="GgufImporter"/>: Llama's Q/K rows in interleaved-RoPE order, Gemma's norms with the 1 added,
/// Falcon's q/k/v fused into attn_qkv. The written file is read back and must give the same config, so a model
/// llama.cpp's architectures cannot express (ALiBi Falcon, a Gemma 2 attention scale other than llama.cpp's) is
/// refused instead of silently running differently there.
/// </summary>
public static class GgufExporter
{
    private const int Alignment = GgufFile.DefaultAlignment;

    private sealed record Output(string Name, GgmlType Type, long[] Dims, long ByteLength, Action<Stream> Write);

    public static void Write(IModelSource model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        var c = model.Config;
        if (!GgufConfig.Families.Contains(c.Architecture))
            throw new UnsupportedModelException($"{model.Path}: architecture {c.Architecture} has no llama.cpp equivalent.");
        var metadata = Metadata(model);
        var outputs = Tensors(model);

        var infos = new List<GgufTensorInfo>(outputs.Count);
        long offset = 0;
        foreach (var o in outputs)
        {
            infos.Add(new GgufTensorInfo(o.Name, o.Type, o.Dims, offset, o.ByteLength));
            offset = Align(offset + o.ByteLength);
        }
        string temporary = path + ".partial";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                GgufWriter.WriteHeader(stream, metadata, infos, Alignment);
                long dataStart = stream.Position;
                foreach (var (o, info) in outputs.Zip(infos))
                {
                    Pad(stream, dataStart + info.Offset);
                    long before = stream.Position;
                    o.Write(stream);
                    if (stream.Position - before != o.ByteLength)
                        throw new InvalidOperationException($"Tensor {o.Name}: wrote {stream.Position - before} bytes, expected {o.ByteLength}.");
                }
                Pad(stream, dataStart + offset);
            }
            CheckReadsBack(model, temporary);
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream stream, long position)
    {
        while (stream.Position < position) stream.WriteByte(0);
    }

    private static List<KeyValuePair<string, GgufValue>> Metadata(IModelSource model)
    {
        var c = model.Config;
        string a = c.Architecture + ".";
        var kv = new Dictionary<string, GgufValue>(StringComparer.Ordinal);
        void U32(string key, int value) => kv[key] = new GgufValue(GgufValueType.UInt32, (uint)value);
        void F32(string key, float value) => kv[key] = new GgufValue(GgufValueType.Float32, value);

        kv["general.architecture"] = new GgufValue(GgufValueType.String, c.Architecture);
        kv["general.name"] = new GgufValue(GgufValueType.String, Path.GetFileNameWithoutExtension(model.Provenance.Source.TrimEnd('/', '\\')));
        U32("general.alignment", Alignment);
        U32(a + "vocab_size", c.VocabSize);
        U32(a + "context_length", c.ContextLength);
        U32(a + "embedding_length", c.HiddenSize);
        U32(a + "block_count", c.NumLayers);
        U32(a + "feed_forward_length", c.IntermediateSize);
        U32(a + "attention.head_count", c.NumHeads);
        U32(a + "attention.head_count_kv", c.NumKvHeads);
        if (c.HeadDim * c.NumHeads != c.HiddenSize || c.Architecture is "gemma" or "gemma2")
        {
            U32(a + "attention.key_length", c.HeadDim);
            U32(a + "attention.value_length", c.HeadDim);
        }
        F32(a + (c.Norm == NormKind.LayerNorm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"), c.NormEps);
        U32(a + "rope.dimension_count", c.RotaryDim);
        F32(a + "rope.freq_base", c.RopeTheta);
        if (c.Architecture == "stablelm") kv[a + "use_parallel_residual"] = new GgufValue(GgufValueType.Bool, c.Layout == BlockLayout.Parallel);
        if (c.Architecture == "gemma2")
        {
            F32(a + "attn_logit_softcapping", c.AttentionSoftcap);
            F32(a + "final_logit_softcapping", c.FinalSoftcap);
            U32(a + "attention.sliding_window", c.SlidingWindow);
        }

        foreach (var (key, value) in TokenizerMetadata(model)) kv[key] = value;
        var s = model.Special;
        if (s.Bos is int bos) U32("tokenizer.ggml.bos_token_id", bos);
        if (s.Eos.Count > 0) U32("tokenizer.ggml.eos_token_id", s.Eos[0]);
        if (s.Pad is int pad) U32("tokenizer.ggml.padding_token_id", pad);
        kv["tokenizer.ggml.add_bos_token"] = new GgufValue(GgufValueType.Bool, s.AddBos);
        if (s.ChatTemplate is string template) kv["tokenizer.chat_template"] = new GgufValue(GgufValueType.String, template);
        return [.. kv];
    }

    /// <summary>
    /// The tokenizer.ggml.* keys: those of an imported GGUF as they were, a SentencePiece tokenizer.model as
    /// llama.cpp's "llama" vocabulary, otherwise "no_vocab" (llama.cpp then runs on token ids only).
    /// </summary>
    private static IEnumerable<KeyValuePair<string, GgufValue>> TokenizerMetadata(IModelSource model)
    {
        var files = model.Tokenizer.Files;
        if (files.TryGetValue(GgufTokenizer.FileName, out byte[]? gguf))
            return GgufFile.ParseHeader(GgufTokenizer.FileName, gguf).Metadata.Values.Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal));
        if (files.TryGetValue("tokenizer.model", out byte[]? spm) && SentencePieceModel.Parse(spm) is { ModelType: 2 } sp)
        {
            return
            [
                new(GgufTokenizer.ModelKey, new GgufValue(GgufValueType.String, "llama")),
                new(GgufTokenizer.TokensKey, new GgufValue(GgufValueType.Array, sp.Pieces.Select(p => p.Piece).ToArray(), GgufValueType.String)),
                new("tokenizer.ggml.scores", new GgufValue(GgufValueType.Array, sp.Pieces.Select(p => p.Score).ToArray(), GgufValueType.Float32)),
                new("tokenizer.ggml.token_type", new GgufValue(GgufValueType.Array, sp.Pieces.Select(p => (int)p.Type).ToArray(), GgufValueType.Int32)),
                new("tokenizer.ggml.unknown_token_id", new GgufValue(GgufValueType.UInt32, (uint)sp.UnkId)),
                new("tokenizer.ggml.add_space_prefix", new GgufValue(GgufValueType.Bool, sp.AddDummyPrefix)),
                new("tokenizer.ggml.remove_extra_whitespaces", new GgufValue(GgufValueType.Bool, sp.RemoveExtraWhitespaces)),
            ];
        }
        return [new(GgufTokenizer.ModelKey, new GgufValue(GgufValueType.String, "no_vocab"))];
    }

    private static List<Output> Tensors(IModelSource model)
    {
        var c = model.Config;
        var result = new List<Output>();
        foreach (var t in model.Tensors)
        {
            string name = t.Name;
            if (c.Architecture == "falcon")
            {
                // llama.cpp's falcon reads one fused attn_qkv ([q; k; v] rows); with two LayerNorms (40B) it calls the
                // attention's attn_norm_2 and the MLP's attn_norm.
                if (name.EndsWith(".attn_k.weight", StringComparison.Ordinal) || name.EndsWith(".attn_v.weight", StringComparison.Ordinal)
                    || name.EndsWith(".attn_k.bias", StringComparison.Ordinal) || name.EndsWith(".attn_v.bias", StringComparison.Ordinal)) continue;
                if (name.EndsWith(".attn_q.weight", StringComparison.Ordinal) || name.EndsWith(".attn_q.bias", StringComparison.Ordinal))
                {
                    string kind = name.EndsWith(".bias", StringComparison.Ordinal) ? "bias" : "weight", layer = name[..^("attn_q." + kind).Length];
                    var parts = new[] { t, Require(model, layer + "attn_k." + kind), Require(model, layer + "attn_v." + kind) };
                    if (parts.Any(p => p.Type != t.Type))
                        throw new UnsupportedModelException($"{model.Path}: {layer}attn_q/k/v have different storage types, so they cannot be fused into llama.cpp's attn_qkv.");
                    long rows = parts.Sum(p => (long)p.Rows);
                    long[] shape = t.Shape.Length == 1 ? [rows] : [rows, t.Cols];
                    result.Add(new Output(layer + "attn_qkv." + kind, ToGgml(model, t), Dims(shape), parts.Sum(p => p.ByteLength),
                        s => { foreach (var p in parts) CopyRows(p, s, null); }));
                    continue;
                }
                int dot = name.IndexOf('.', 4);
                bool twoNorms = name.StartsWith("blk.", StringComparison.Ordinal) && model.Find(name[..(dot + 1)] + TensorNames.FfnNorm) is not null;
                if (twoNorms && name.EndsWith("." + TensorNames.FfnNorm, StringComparison.Ordinal)) name = name[..(dot + 1)] + TensorNames.AttnNorm;
                else if (twoNorms && name.EndsWith("." + TensorNames.FfnNormBias, StringComparison.Ordinal)) name = name[..(dot + 1)] + TensorNames.AttnNormBias;
                else if (twoNorms && name.EndsWith("." + TensorNames.AttnNorm, StringComparison.Ordinal)) name = name[..(dot + 1)] + "attn_norm_2.weight";
                else if (twoNorms && name.EndsWith("." + TensorNames.AttnNormBias, StringComparison.Ordinal)) name = name[..(dot + 1)] + "attn_norm_2.bias";
            }
            var source = t;
            if (c.Architecture == "llama" && GgufImporter.IsRotary(t.Name))
            {
                int heads = t.Name.Contains(".attn_q.", StringComparison.Ordinal) ? c.NumHeads : c.NumKvHeads;
                result.Add(new Output(name, ToGgml(model, t), Dims(t.Shape), t.ByteLength, s => CopyRows(source, s, Interleave(heads, c.HeadDim))));
            }
            else if (c.Norm == NormKind.RmsNormPlusOne && name.EndsWith("norm.weight", StringComparison.Ordinal))
            {
                // Gemma computes x·(1 + w); llama.cpp's converter stores 1 + w and multiplies.
                float[] values = t.ToFloat32();
                for (int i = 0; i < values.Length; i++) values[i] += 1f;
                result.Add(new Output(name, GgmlType.F32, Dims(t.Shape), values.Length * 4L, s => s.Write(MemoryMarshal.AsBytes(values.AsSpan()))));
            }
            else result.Add(new Output(name, ToGgml(model, t), Dims(t.Shape), t.ByteLength, s => CopyRows(source, s, null)));
        }
        return result;
    }

    private static ModelTensor Require(IModelSource model, string name) =>
        model.Find(name) ?? throw new ModelFormatException(model.Path, $"tensor {name} is missing.");

    private static GgmlType ToGgml(IModelSource model, ModelTensor t)
    {
        try { return GgmlTypes.FromTensorType(t.Type); }
        catch (UnsupportedModelException e) { throw new UnsupportedModelException($"{model.Path}: tensor {t.Name}: {e.Message}"); }
    }

    private static long[] Dims(long[] shape) => shape.Reverse().ToArray();

    /// <summary>Source row of each output row for llama.cpp's interleaved RoPE: output row 2i + j of a head is its row j·d/2 + i.</summary>
    private static int[] Interleave(int heads, int d)
    {
        var order = new int[heads * d];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < d / 2; i++)
            {
                order[h * d + 2 * i] = h * d + i;
                order[h * d + 2 * i + 1] = h * d + d / 2 + i;
            }
        return order;
    }

    /// <summary>The tensor's rows in <paramref name="order"/> (or as stored), copied from the mapping in bounded pieces.</summary>
    private static unsafe void CopyRows(ModelTensor t, Stream output, int[]? order)
    {
        byte* data = (byte*)t.Data;
        if (order is null)
        {
            for (long done = 0; done < t.ByteLength; done += 1 << 30)
                output.Write(new ReadOnlySpan<byte>(data + done, (int)Math.Min(1 << 30, t.ByteLength - done)));
            return;
        }
        long rowBytes = t.ByteLength / t.Rows;
        foreach (int row in order) output.Write(new ReadOnlySpan<byte>(data + row * rowBytes, checked((int)rowBytes)));
    }

    /// <summary>The file must read back as the model it came from, or llama.cpp would run something else.</summary>
    private static void CheckReadsBack(IModelSource model, string path)
    {
        using var file = GgufFile.Open(path);
        var written = GgufConfig.Read(file);
        var c = model.Config;
        // Gemma's norms are exported with the 1 added, so they read back as plain RMSNorm.
        var expected = c with { Norm = c.Norm == NormKind.RmsNormPlusOne ? NormKind.RmsNorm : c.Norm, SlidingLayers = written.SlidingLayers };
        var differing = typeof(ModelConfig).GetProperties()
            .Where(p => !Equals(p.GetValue(expected), p.GetValue(written)))
            .Select(p => $"{p.Name} {p.GetValue(c)} would become {p.GetValue(written)}")
            .ToList();
        if (!c.SlidingLayers.SequenceEqual(written.SlidingLayers) && !(c.SlidingWindow == 0 && written.SlidingWindow == 0))
            differing.Add("the sliding-window layers differ from llama.cpp's every-other-layer pattern");
        if (differing.Count > 0)
            throw new UnsupportedModelException($"{model.Path}: llama.cpp's {c.Architecture} cannot express this model: {string.Join("; ", differing)}.");
    }
}

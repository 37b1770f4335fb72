using Google.FlatBuffers;
using OnDeviceLlm.Runtime.Model;
using Fb = OnDeviceLlm.Runtime.Format.Fbs;

namespace OnDeviceLlm.Runtime.Format;

/// <summary>ModelConfig ↔ the schema's Config table.</summary>
internal static class ConfigMapper
{
    private delegate void AddField(FlatBufferBuilder builder, ModelConfig config);
    private delegate ModelConfig ReadField(ModelConfig config, Fb.Config table);

    // One line per scalar ModelConfig property, holding both directions so they cannot drift apart.
    // Adding a property: one field at the end of table Config in model.fbs (with the C# default as its
    // default), run generate.sh, and one line here.
    private static readonly (AddField Add, ReadField Read)[] Scalars =
    [
        ((b, c) => Fb.Config.AddVocabSize(b, c.VocabSize), (c, t) => c with { VocabSize = t.VocabSize }),
        ((b, c) => Fb.Config.AddHiddenSize(b, c.HiddenSize), (c, t) => c with { HiddenSize = t.HiddenSize }),
        ((b, c) => Fb.Config.AddNumLayers(b, c.NumLayers), (c, t) => c with { NumLayers = t.NumLayers }),
        ((b, c) => Fb.Config.AddNumHeads(b, c.NumHeads), (c, t) => c with { NumHeads = t.NumHeads }),
        ((b, c) => Fb.Config.AddNumKvHeads(b, c.NumKvHeads), (c, t) => c with { NumKvHeads = t.NumKvHeads }),
        ((b, c) => Fb.Config.AddHeadDim(b, c.HeadDim), (c, t) => c with { HeadDim = t.HeadDim }),
        ((b, c) => Fb.Config.AddIntermediateSize(b, c.IntermediateSize), (c, t) => c with { IntermediateSize = t.IntermediateSize }),
        ((b, c) => Fb.Config.AddContextLength(b, c.ContextLength), (c, t) => c with { ContextLength = t.ContextLength }),
        ((b, c) => Fb.Config.AddNorm(b, (byte)c.Norm), (c, t) => c with { Norm = (NormKind)t.Norm }),
        ((b, c) => Fb.Config.AddNormEps(b, c.NormEps), (c, t) => c with { NormEps = t.NormEps }),
        ((b, c) => Fb.Config.AddActivation(b, (byte)c.Activation), (c, t) => c with { Activation = (Activation)t.Activation }),
        ((b, c) => Fb.Config.AddFeedForward(b, (byte)c.FeedForward), (c, t) => c with { FeedForward = (FeedForwardKind)t.FeedForward }),
        ((b, c) => Fb.Config.AddLayout(b, (byte)c.Layout), (c, t) => c with { Layout = (BlockLayout)t.Layout }),
        ((b, c) => Fb.Config.AddPositions(b, (byte)c.Positions), (c, t) => c with { Positions = (PositionEncoding)t.Positions }),
        ((b, c) => Fb.Config.AddRotaryDim(b, c.RotaryDim), (c, t) => c with { RotaryDim = t.RotaryDim }),
        ((b, c) => Fb.Config.AddRopeTheta(b, c.RopeTheta), (c, t) => c with { RopeTheta = t.RopeTheta }),
        ((b, c) => Fb.Config.AddScaleEmbeddings(b, c.ScaleEmbeddings), (c, t) => c with { ScaleEmbeddings = t.ScaleEmbeddings }),
        ((b, c) => Fb.Config.AddAttentionScale(b, c.AttentionScale), (c, t) => c with { AttentionScale = t.AttentionScale }),
        ((b, c) => Fb.Config.AddAttentionSoftcap(b, c.AttentionSoftcap), (c, t) => c with { AttentionSoftcap = t.AttentionSoftcap }),
        ((b, c) => Fb.Config.AddFinalSoftcap(b, c.FinalSoftcap), (c, t) => c with { FinalSoftcap = t.FinalSoftcap }),
        ((b, c) => Fb.Config.AddSlidingWindow(b, c.SlidingWindow), (c, t) => c with { SlidingWindow = t.SlidingWindow }),
        ((b, c) => Fb.Config.AddQkNorm(b, c.QkNorm), (c, t) => c with { QkNorm = t.QkNorm }),
        ((b, c) => Fb.Config.AddTiedEmbeddings(b, c.TiedEmbeddings), (c, t) => c with { TiedEmbeddings = t.TiedEmbeddings }),
    ];

    public static Offset<Fb.Config> Write(FlatBufferBuilder builder, ModelConfig config)
    {
        // Strings and vectors must be built before the table is started.
        var architecture = builder.CreateString(config.Architecture);
        var sliding = Fb.Config.CreateSlidingLayersVectorBlock(builder, config.SlidingLayers.ToArray());

        Fb.Config.StartConfig(builder);
        Fb.Config.AddArchitecture(builder, architecture);
        Fb.Config.AddSlidingLayers(builder, sliding);
        foreach (var field in Scalars) field.Add(builder, config);
        return Fb.Config.EndConfig(builder);
    }

    public static ModelConfig Read(string path, Fb.Config table, int headerBytes)
    {
        var sliding = new bool[Header.Count(path, table.SlidingLayersLength, 1, headerBytes, "sliding layer")];
        for (int i = 0; i < sliding.Length; i++) sliding[i] = table.SlidingLayers(i);

        // The required members start at zero only to satisfy the initializer; the loop sets each one.
        var config = new ModelConfig
        {
            Architecture = table.Architecture,
            VocabSize = 0, HiddenSize = 0, NumLayers = 0, NumHeads = 0, NumKvHeads = 0,
            HeadDim = 0, IntermediateSize = 0, ContextLength = 0,
            SlidingLayers = sliding,
        };
        foreach (var field in Scalars) config = field.Read(config, table);
        return config;
    }
}

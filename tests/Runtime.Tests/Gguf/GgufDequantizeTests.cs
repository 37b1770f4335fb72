using System.Runtime.InteropServices;
using System.Security.Cryptography;
using OnDeviceLlm.Runtime.Conversion;
using OnDeviceLlm.Runtime.Format;
using OnDeviceLlm.Runtime.Import.Gguf;
using OnDeviceLlm.Runtime.Model;
using OnDeviceLlm.Runtime.Quantization;
using Xunit;
using static OnDeviceLlm.Runtime.Tests.Gguf.GgufTestFiles;

namespace OnDeviceLlm.Runtime.Tests.Gguf;

public sealed class GgufDequantizeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("odllm-gguf-kq-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// One block of each type as ggml's reference quantizer (from_float_ref of libggml-base, LLamaSharp.Backend.Cpu
    /// 0.30.0) wrote it for x[i] = sin(0.37 i)·(1 + i mod 5) − 0.25, i &lt; 256, and the SHA-256 of the f32 values
    /// ggml's to_float decodes from it: decoding here must give the very same bits.
    /// </summary>
    private static readonly (GgmlType Type, string Block, string Sha256)[] Vectors =
    [
        (GgmlType.Q4_1,
         "3B3913C56778AADD9FA9CACAB8867755230161569E3820C41314677799BBFE8FA8B8A885625523024F3937C560464646588A99BADCFD9DA8A88764711F391EC5552301615757688A8DA9CBECFC9B9887163931C59673664523026367688ABC9FB9CBEBEBF6388DC4989786536045241303656778AADD8FA81C3927C5ECFC9B9887653260563525367888AACC1B392AC59FB9CBEBDB888766441260564646688B",
         "FFB4CD978F7EA2A8674BD9B05868AF24A341DC478E1852338063DF321E58EAD0"),
        (GgmlType.Q5_0,
         "1335FE01FC03DFF146AB2F528494710CEEAA5603C1AD8AB40FF80FF0D8D62110DC7713D0AE9DAFE42A5498FB3735F01FC03FC09D7B7CA0F52165A8FB2B41401DC8E31E35C07F80FFAA5603C2AD9DB0040A4285C8E927200E313500FF01FE1CE6CD893605D5BEC003681D5285B6B5C0B4FE07F80FCFC0F3593F74B7EAF936310EBA54E0AE27350FF01FE0C8E926200ECA65D09C6A5A6CE00134882A353FC07F802E5295B6B5110EDB8723C09D7C8DB006",
         "7E3B160A95C8B448A35EC75BCED0C2C172989D640F455C1EE4D9385B39FBC0FD"),
        (GgmlType.Q5_1,
         "0F3513C5FE01FC03DFF246AB2F628494720CEEAA5603C1AD783420C4F007F00F1729DEEF2388EC1F5162501BD4AB5703243537C5F01FE03FC09D7B7CA0052265B9FB2C41401DC9E3F5341EC5C07F80FFAA5603D2AEAEC0051B4396D9FA28301EEC3431C500FF01FE2DF7CD8A3605D6CFD014792F63A6C8C6CD348DC401F807F0303F0CA7C09B581606C9CFF146AB1F51F23427C50FF01FE0D9FA27301ECA65D0AD6A5A6CF1014599F1342AC53FC07F802F63A6C7C6110FDC8823D0AD8C8DC107",
         "54E5E7C84E5C7BEBDF3CDEC52E35048471C34B31C36E568AE42FC99898662B12"),
        (GgmlType.Q2_K,
         "EFFC8BBCED8ACAFFACDDFECCFC9BEFDC411216176B6AAEEEF6B5F5E5E1D49081520206474A5B6FABBBBAAAE9E5949291F9B8B5A4A094544565161A5B6A6EAEBABAB9E9E5D49481514106464A5A5F6BABD4327535",
         "59060F6A649DCDE4F1EB2E85A6C1996CC6BBA67CFA20B899F2D06BAFBA100A4F"),
        (GgmlType.Q3_K,
         "F3F3F2F2B4B4BC3C3F2D2F2F4F4BCBC3B6B7E787C5C5C5494959587A7A7E3EBE88743331CCDB0753E07DB185CEB72BDDDF6C25E3AD89C22E1E48BBF2F1045B1EE163654A7F271BC9B86722F0CBC7126F144483FECD1837D3A33CFDB0858EF72BAE23EB6B31BC064133CC330373A9",
         "E89B440063B2575757A80A4277631EB54C768165A8EEAFDDE5FDBC3B9C2A3EF5"),
        (GgmlType.Q4_K,
         "7F21642DFCF3FDFBFDEFFBFCFF6ADCEA38497B7D9FC9EAFA899687552351311706186A7D99CBFC9DACB8A7856350260550361516777A88AADC9DBDC8C8B68471562403635557688A8DAFC9EAF9989686867366350352433738597C8EA9DAFB8A989786546240261606686B79AADC8DADFCACBBC8B79582604625057668789ACC9EBFD9E9E89683764513625347486A8C",
         "8330F8DFA92B5F03AE251637158356837D40E1829EFF109BB9795B16D9D797B3"),
        (GgmlType.Q5_K,
         "451D452DFEF6FFFBFEF2FFFDFC7BECFCE0C1C1C187870F0F1F1E1E3C7C78F8F0F0E0E1C1C383870F0F1F1E1E3C7C78F87F91E6FA3F82C4F4112C0EBA46B3713D1D2FD4EA2285E82957605E1AD5A05C0AA06D3B1CE0E50155B83B6B91A08D08E3AC5907C7AA9FC2161A4F92D4F4213C1E0DF7CD6A06B5866F6094E91F53A6F716323F0CA8C3904D1C0DC1C7F246AA1C5CF93967706E1AF5C08D3A0ADCC1D114792D6FA2C3C11C16DD8926D5A68F80C409",
         "0E8D04F91E2D983861A2C8EED309415F43991F8B2BDE605999C34053FDDBEE2D"),
        (GgmlType.Q6_K,
         "129D748AF1AB37970D58651C05BC1F668AFF4733D41BC0429E00BC758BE198543FBB411FA8AFF6916C4BCE1734F7FFB64CBA14824A3E710B1471F37CB33A441E0917D8F0B83B990481493D701B148104520DC7BF069079870970AB834A1186D6BF50A7C19E18DF73F36C019C739910CB39B831868A13FA93E11A8A10DAE755FC4A191914546161A1F5B6B6EAEF9B5B4E6D2D3A7B66625397868695D5D898ADADF6BBAA9F9F9B4B4E1E1918546561A1B58A89D9D4E4A471613136767A2A2F5B4B74836F6980718E8268857191866A84915E95",
         "2410CAC4844CA0B1D61FD278BC6E0852CF7DD37DC1A959F400FDCBD6E886CA8E"),
    ];

    public static IEnumerable<object[]> VectorCases() => Vectors.Select(v => new object[] { v.Type, v.Block, v.Sha256 });

    [Theory, MemberData(nameof(VectorCases))]
    public void DecodesBitForBitLikeGgml(GgmlType type, string blockHex, string expectedSha256)
    {
        byte[] blocks = Convert.FromHexString(blockHex);
        var values = new float[256];
        GgufDequantize.Row(type, blocks, values);
        Assert.Equal(expectedSha256, Convert.ToHexString(SHA256.HashData(MemoryMarshal.AsBytes(values.AsSpan()))));
        float[] x = Enumerable.Range(0, 256).Select(i => MathF.Sin(i * 0.37f) * (1 + i % 5) - 0.25f).ToArray();
        // And the decoded values are a quantization of the input (Q2_K's 2 bits err by up to 1.6 here).
        Assert.All(x.Zip(values), p => Assert.True(Math.Abs(p.First - p.Second) < 2f, $"{p.First} vs {p.Second}"));
    }

    [Fact]
    public void KQuantTensorsAreImportedAsQ8OfTheirDecodedValues()
    {
        // ffn_down [hidden 32, ffn 256] in Q4_K: each row is one block, the Q4_K test vector.
        byte[] q4k = Convert.FromHexString(BlockHex(GgmlType.Q4_K));
        var metadata = LlamaMetadata();
        metadata[5] = Kv("llama.feed_forward_length", 256u);
        var tensors = LlamaTensors(GgmlType.F32);
        for (int i = 0; i < tensors.Count; i++)
        {
            if (tensors[i].Name is "blk.0.ffn_gate.weight" or "blk.0.ffn_up.weight") tensors[i] = (tensors[i].Name, [Hidden, 256], GgmlType.F32);
            if (tensors[i].Name == "blk.0.ffn_down.weight") tensors[i] = (tensors[i].Name, [256, Hidden], GgmlType.Q4_K);
        }
        string gguf = Path.Combine(_dir, "q4k.gguf"), odlm = Path.Combine(_dir, "q4k.odlm");
        File.WriteAllBytes(gguf, Build(metadata, tensors, (name, length) => name == "blk.0.ffn_down.weight"
            ? Enumerable.Repeat(q4k, length / q4k.Length).SelectMany(b => b).ToArray() : null!));
        ModelConverter.Convert(gguf, odlm, QuantizationScheme.Source);
        using var model = ModelFile.Open(odlm);
        var down = model.Find("blk.0.ffn_down.weight")!;
        Assert.Equal(TensorType.Q8_0, down.Type);
        var expected = new float[256];
        GgufDequantize.Row(GgmlType.Q4_K, q4k, expected);
        var row = new float[256];
        for (int r = 0; r < Hidden; r++)
        {
            down.ReadRow(r, row);
            // Q8_0's error: half a step of max|x| / 127 per block of 32.
            Assert.All(expected.Zip(row), p => Assert.True(Math.Abs(p.First - p.Second) <= 5.5f / 254 + 1e-6f, $"{p.First} vs {p.Second}"));
        }
    }

    private static string BlockHex(GgmlType type) => Vectors.Single(v => v.Type == type).Block;
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using OnDeviceLlm.Runtime.Inference;
using Xunit;

namespace OnDeviceLlm.Runtime.Tests.Inference;

public class InferenceSessionTests
{
    // A pass that writes token + position into its logits and offers (or not) its own logits buffer.
    private sealed class RecordingPass(int vocab, bool offersBuffer) : IForwardPass
    {
        private readonly float[]? _buffer = offersBuffer ? new float[vocab] : null;
        public List<float[]?> Targets { get; } = [];
        public int Length { get; private set; }
        public int Capacity => 16;
        public int VocabSize => vocab;
        public float[]? LogitsBuffer => _buffer;

        public void Forward(ReadOnlySpan<int> tokens, Span<float> logits)
        {
            Targets.Add(_buffer is not null && Unsafe.AreSame(ref MemoryMarshal.GetReference(logits), ref _buffer[0]) ? _buffer : null);
            logits.Fill(tokens[^1] + Length);
            Length += tokens.Length;
        }

        public void Truncate(int length) => Length = length;
        public void Dispose() { }
    }

    [Fact]
    public void Decode_WritesIntoThePassBuffer_WhenThePassOffersOne()
    {
        var pass = new RecordingPass(5, offersBuffer: true);
        using var session = new InferenceSession(pass);
        session.Prefill([1, 2]);
        var logits = session.Decode(3);
        Assert.All(pass.Targets, t => Assert.Same(pass.LogitsBuffer, t));
        Assert.True(Unsafe.AreSame(ref MemoryMarshal.GetReference(logits), ref pass.LogitsBuffer![0]));
        Assert.Equal([5f, 5f, 5f, 5f, 5f], logits.ToArray());
    }

    [Fact]
    public void Decode_UsesItsOwnBuffer_WhenThePassOffersNone()
    {
        var pass = new RecordingPass(8, offersBuffer: false);
        using var session = new InferenceSession(pass);
        var logits = session.Decode(7);
        Assert.Equal(Enumerable.Repeat(7f, 8), logits.ToArray());
        Assert.All(pass.Targets, Assert.Null);
    }
}

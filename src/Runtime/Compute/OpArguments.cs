namespace OnDeviceLlm.Runtime.Compute;

/// <summary>The shape checks every <see cref="IKernels"/> implementation runs before an element-wise or row-wise operator.</summary>
internal static class OpArguments
{
    public static void Rows(int inputLength, int rows, int dim, int weightLength, int biasLength, int outputLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        long values = (long)rows * dim;
        if (inputLength < values) throw new ArgumentException($"x holds {inputLength} floats but {rows}×{dim} are needed.", "x");
        if (outputLength < values) throw new ArgumentException($"y holds {outputLength} floats but {rows}×{dim} are needed.", "y");
        if (weightLength == 0 || weightLength % dim != 0)
            throw new ArgumentException($"The weight holds {weightLength} floats, not a whole number of rows of {dim}.", "weight");
        if (biasLength != 0 && biasLength != weightLength)
            throw new ArgumentException($"The bias holds {biasLength} floats but the weight {weightLength}.", "bias");
    }

    public static void RopeTables(int pos0, int rows, int half, int cosLength, int sinLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pos0);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (cosLength < (long)rows * half || sinLength < (long)rows * half)
            throw new ArgumentException($"The cos/sin tables hold {cosLength}/{sinLength} floats but {rows}×{half} are needed.");
    }

    public static void Rope(int length, int rows, int heads, int headDim, int rotaryDim, int cosLength, int sinLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        if (rotaryDim <= 0 || rotaryDim > headDim || rotaryDim % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(rotaryDim), rotaryDim, $"The rotary dims must be even and within the head's {headDim}.");
        if (length < (long)rows * heads * headDim) throw new ArgumentException($"x holds {length} floats but {rows}×{heads}×{headDim} are needed.", "x");
        long table = (long)rows * (rotaryDim / 2);
        if (cosLength < table || sinLength < table)
            throw new ArgumentException($"The cos/sin tables hold {cosLength}/{sinLength} floats but {rows}×{rotaryDim / 2} are needed.");
    }

    public static void Elementwise(int count, int otherLength, int outputLength)
    {
        if (otherLength < count) throw new ArgumentException($"An input holds {otherLength} floats but {count} are needed.");
        if (outputLength < count) throw new ArgumentException($"y holds {outputLength} floats but {count} are needed.", "y");
    }

    public static void Activation(Model.Activation activation)
    {
        if (activation is not (Model.Activation.Silu or Model.Activation.GeluTanh or Model.Activation.GeluErf))
            throw new ArgumentOutOfRangeException(nameof(activation), activation, "Unknown activation.");
    }
}

using System.Runtime.InteropServices;

namespace OnDeviceLlm.Runtime.Compute;

internal static partial class NativeMethods
{
    internal const int TypeF32 = 0, TypeF16 = 1;

    /// <summary>odllm_attention_params, field for field.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct AttentionParams
    {
        public float* AlibiSlopes;
        public long NQueries;
        public long Pos0;
        public long KvPositions;
        public int NHeads;
        public int NKvHeads;
        public int HeadDim;
        public int KvType;
        public int Window;
        public float Scale;
        public float Softcap;
    }

    [LibraryImport(LibraryName)]
    internal static unsafe partial int odllm_attention(ContextHandle context, in AttentionParams parameters, float* q, void* k, void* v, float* output);
}

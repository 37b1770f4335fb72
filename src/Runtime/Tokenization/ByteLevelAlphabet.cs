namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>
/// GPT-2's reversible byte → printable-char table (bytes_to_unicode). The library applies it only inside
/// BpeTokenizer after pre-tokenization; we need it earlier because Hugging Face pre-tokenizers that follow
/// ByteLevel in a Sequence (Falcon's Digits and Split) see the byte-level characters, not the original text.
/// </summary>
internal static class ByteLevelAlphabet
{
    public static readonly char[] ByteToChar = BuildByteToChar();
    /// <summary>Char → byte, or -1 where the char is not part of the alphabet.</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[512];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++) map[ByteToChar[b]] = (short)b;
        return map;
    }

    public static int ToByte(char c) => c < 512 ? CharToByte[c] : -1;
}

using System.Text;

namespace OnDeviceLlm.Runtime.Tokenization;

/// <summary>
/// The parts of a SentencePiece ModelProto (tokenizer.model) needed to run it. Read by hand because the library
/// keeps its generated protobuf classes internal and exposes neither piece scores nor piece types.
/// </summary>
internal sealed class SentencePieceModel
{
    public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

    public List<(string Piece, float Score, PieceType Type)> Pieces { get; } = [];
    public int ModelType { get; private set; } = 1; // 1 unigram, 2 BPE
    public bool ByteFallback { get; private set; }
    public int UnkId { get; private set; }
    public int BosId { get; private set; } = 1;
    public int EosId { get; private set; } = 2;
    public string NormalizerName { get; private set; } = "";
    public bool AddDummyPrefix { get; private set; } = true;
    public bool RemoveExtraWhitespaces { get; private set; } = true;
    public bool EscapeWhitespaces { get; private set; } = true;
    public bool TreatWhitespaceAsSuffix { get; private set; }

    public static SentencePieceModel Parse(byte[] data)
    {
        var model = new SentencePieceModel();
        try
        {
            var root = new Reader(data, 0, data.Length);
            while (root.Next(out int field, out int wire))
            {
                switch (field)
                {
                    case 1 when wire == 2: model.ReadPiece(root.Message()); break;
                    case 2 when wire == 2: model.ReadTrainerSpec(root.Message()); break;
                    case 3 when wire == 2: model.ReadNormalizerSpec(root.Message()); break;
                    default: root.Skip(wire); break;
                }
            }
        }
        catch (Exception ex) when (ex is IndexOutOfRangeException or ArgumentException or InvalidDataException)
        {
            throw new TokenizerException("tokenizer.model: not a valid SentencePiece model (corrupt protobuf).", ex);
        }
        if (model.Pieces.Count == 0) throw new TokenizerException("tokenizer.model: not a valid SentencePiece model (it has no pieces).");
        return model;
    }

    private void ReadPiece(Reader r)
    {
        string piece = "";
        float score = 0;
        var type = PieceType.Normal;
        while (r.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2) piece = r.String();
            else if (field == 2 && wire == 5) score = r.Float();
            else if (field == 3 && wire == 0) type = (PieceType)r.Varint();
            else r.Skip(wire);
        }
        Pieces.Add((piece, score, type));
    }

    private void ReadTrainerSpec(Reader r)
    {
        while (r.Next(out int field, out int wire))
        {
            if (wire != 0) { r.Skip(wire); continue; }
            long v = r.Varint();
            switch (field)
            {
                case 3: ModelType = (int)v; break;
                case 24: TreatWhitespaceAsSuffix = v != 0; break;
                case 35: ByteFallback = v != 0; break;
                case 40: UnkId = (int)v; break;
                case 41: BosId = (int)v; break;
                case 42: EosId = (int)v; break;
            }
        }
    }

    private void ReadNormalizerSpec(Reader r)
    {
        while (r.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2) { NormalizerName = r.String(); continue; }
            if (wire != 0) { r.Skip(wire); continue; }
            long v = r.Varint();
            if (field == 3) AddDummyPrefix = v != 0;
            else if (field == 4) RemoveExtraWhitespaces = v != 0;
            else if (field == 5) EscapeWhitespaces = v != 0;
        }
    }

    private ref struct Reader(byte[] data, int pos, int end)
    {
        private int _pos = pos;

        public bool Next(out int field, out int wire)
        {
            if (_pos >= end) { field = wire = 0; return false; }
            long key = Varint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            return true;
        }

        public long Varint()
        {
            long result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = data[_pos++];
                result |= (long)(b & 0x7F) << shift;
                if (b < 0x80) return result;
            }
            throw new InvalidDataException("varint too long");
        }

        private int Length()
        {
            long len = Varint();
            if (len < 0 || _pos + len > end) throw new InvalidDataException("length past the end");
            return (int)len;
        }

        public Reader Message() { int len = Length(); var r = new Reader(data, _pos, _pos + len); _pos += len; return r; }
        public string String() { int len = Length(); string s = Encoding.UTF8.GetString(data, _pos, len); _pos += len; return s; }
        public float Float() { float f = BitConverter.ToSingle(data, _pos); _pos += 4; return f; }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: _pos += 8; break;
                case 2: int len = Length(); _pos += len; break;
                case 5: _pos += 4; break;
                default: throw new InvalidDataException($"wire type {wire}");
            }
            if (_pos > end) throw new InvalidDataException("field past the end");
        }
    }
}

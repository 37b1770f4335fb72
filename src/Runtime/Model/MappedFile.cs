using System.IO.MemoryMappedFiles;

namespace OnDeviceLlm.Runtime.Model;

/// <summary>
/// A whole file memory-mapped read-only, its base address pinned until <see cref="Dispose"/>. The one way model
/// files (.odlm, safetensors, GGUF) are opened, so weights are never read or copied until used.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;

    private MappedFile(string path, long length, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* @base)
    {
        Path = path; Length = length; _map = map; _view = view; Base = @base;
    }

    public string Path { get; }
    public long Length { get; }
    public byte* Base { get; }

    /// <summary>
    /// Maps <paramref name="path"/>; a file that cannot be opened, or is shorter than <paramref name="minimumLength"/>
    /// (then <paramref name="tooShort"/> gives the sentence for its length), is a <see cref="ModelFormatException"/>.
    /// </summary>
    public static MappedFile Open(string path, long minimumLength, Func<long, string> tooShort)
    {
        // The bytes are used as stored; every format read here is little-endian.
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Model files are mapped as stored (little-endian); big-endian machines are not supported.");
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ModelFormatException(path, "the file does not exist.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, $"the file cannot be opened: {e.Message}", e);
        }

        long length = stream.Length;
        if (length < minimumLength)
        {
            stream.Dispose();
            throw new ModelFormatException(path, tooShort(length));
        }

        var map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        MemoryMappedViewAccessor? view = null;
        byte* pointer = null;
        try
        {
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return new MappedFile(path, length, map, view, pointer + view.PointerOffset);
        }
        catch
        {
            if (pointer != null) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}

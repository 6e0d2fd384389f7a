using System.Buffers.Binary;
using Google.Protobuf;

namespace Replay.Clients;

/// <summary>gRPC length-prefixed message framing (gRPC over HTTP/2 spec: 1-byte compressed flag, 4-byte big-endian length, message).</summary>
internal static class GrpcFraming
{
    /// <summary>The 5-byte prefix length.</summary>
    public const int PrefixLength = 5;

    /// <summary>Frames an uncompressed message.</summary>
    public static byte[] Frame(IMessage message)
    {
        var size = message.CalculateSize();
        var bytes = new byte[PrefixLength + size];
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(1), (uint)size);
        message.WriteTo(bytes.AsSpan(PrefixLength));
        return bytes;
    }

    /// <summary>The message of a single framed, uncompressed message; false when <paramref name="framed"/> is not one.</summary>
    public static bool TryUnframe(ReadOnlySpan<byte> framed, out ReadOnlySpan<byte> message)
    {
        message = default;
        if (framed.Length < PrefixLength || framed[0] != 0)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(framed[1..]);
        if (length != framed.Length - PrefixLength)
        {
            return false;
        }

        message = framed[PrefixLength..];
        return true;
    }
}

package preprocesstest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// HostilePNG is a 100-byte PNG whose header declares w x h 8-bit RGBA
// pixels, followed by a token of pixel data: a decompression bomb's shape
// (20000x20000 would need 1.6 GB decoded), and with 0 or a huge dimension,
// a malformed header. Package preprocess's own tests keep a copy, since
// they cannot import this package.
func HostilePNG(w, h uint32) []byte {
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	b.Write(pngChunk("IHDR", ihdr[:]))
	b.Write(pngChunk("IDAT", make([]byte, 64)))
	b.Write(pngChunk("IEND", nil))
	return b.Bytes()
}

// pngChunk encodes one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	return b.Bytes()
}

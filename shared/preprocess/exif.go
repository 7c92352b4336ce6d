package preprocess

import "encoding/binary"

// jpegOrientation returns the EXIF orientation (1..8) of a JPEG, or 1 when
// there is none or the EXIF block is malformed. Only the one tag Orchard
// needs is read, so a full EXIF library is not worth its dependency; every
// offset is bounds-checked because the bytes are untrusted.
func jpegOrientation(b []byte) int {
	o := 1
	jpegSegments(b, func(marker byte, seg []byte) bool {
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if v := tiffOrientation(seg[6:]); v != 0 {
				o = v
				return false
			}
		}
		return true
	})
	return o
}

// jpegMultiScan reports whether libjpeg will buffer the whole image's DCT
// coefficients to decode this JPEG (two bytes per stored sample, whatever
// the output scale): progressive frames, and frames whose first scan does
// not carry every component. Unreadable markers count as multi-scan, the
// costlier answer.
func jpegMultiScan(b []byte) bool {
	multi, comps := true, 0
	jpegSegments(b, func(marker byte, seg []byte) bool {
		switch marker {
		case 0xC2, 0xC6, 0xCA, 0xCE: // progressive SOFs
			return false
		case 0xC0, 0xC1, 0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCD, 0xCF:
			if len(seg) >= 6 {
				comps = int(seg[5])
			}
		case 0xDA: // the first scan
			multi = len(seg) < 1 || int(seg[0]) < comps
		}
		return true
	})
	return multi
}

// jpegSegments calls fn with each marker and its segment payload, up to and
// including the first start of scan (SOS), whose payload is the scan
// header; fn returns false to stop.
func jpegSegments(b []byte, fn func(marker byte, seg []byte) bool) {
	i := 2 // after SOI
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return
		}
		marker := b[i+1]
		if marker == 0xFF { // fill byte
			i++
			continue
		}
		if marker == 0xD9 { // EOI
			return
		}
		if marker >= 0xD0 && marker <= 0xD7 || marker == 0x01 { // markers without length
			i += 2
			continue
		}
		n := int(binary.BigEndian.Uint16(b[i+2 : i+4]))
		if n < 2 || i+2+n > len(b) {
			return
		}
		if !fn(marker, b[i+4:i+2+n]) || marker == 0xDA {
			return
		}
		i += 2 + n
	}
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF structure; 0 if absent.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 0
	}
	off := int64(bo.Uint32(t[4:8]))
	if off < 8 || off+2 > int64(len(t)) {
		return 0
	}
	count := int64(bo.Uint16(t[off : off+2]))
	for k := int64(0); k < count; k++ {
		e := off + 2 + 12*k
		if e+12 > int64(len(t)) {
			return 0
		}
		if bo.Uint16(t[e:e+2]) != 0x0112 {
			continue
		}
		// Type SHORT (3), count 1: the value sits in the first two bytes of
		// the value field.
		if bo.Uint16(t[e+2:e+4]) != 3 {
			return 0
		}
		v := int(bo.Uint16(t[e+8 : e+10]))
		if v < 1 || v > 8 {
			return 0
		}
		return v
	}
	return 0
}

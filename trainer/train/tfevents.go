package train

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// TFEventsFile names the TensorBoard event file of a run (TensorBoard reads
// any file whose name contains "tfevents").
func TFEventsFile(version string) string { return "events.out.tfevents." + version + ".orchard" }

// TFEvents encodes the epoch metrics as a TensorBoard event file (TFRecord
// framing of tensorflow.Event protos with scalar summaries), so Vertex AI
// TensorBoard (AIP_TENSORBOARD_LOG_DIR) can plot them without TensorFlow.
func TFEvents(history []EpochMetrics, start time.Time) []byte {
	var out bytes.Buffer
	wall := float64(start.UnixNano()) / 1e9
	var ev []byte
	ev = protowire.AppendTag(ev, 1, protowire.Fixed64Type)
	ev = protowire.AppendFixed64(ev, math.Float64bits(wall))
	ev = protowire.AppendTag(ev, 3, protowire.BytesType)
	ev = protowire.AppendString(ev, "brain.Event:2")
	writeRecord(&out, ev)
	for _, m := range history {
		wall += m.Seconds
		var sum []byte
		for _, kv := range []struct {
			tag string
			v   float64
		}{
			{"loss/train", m.TrainLoss}, {"loss/validation", m.ValLoss},
			{"accuracy/train", m.TrainAccuracy}, {"accuracy/validation", m.ValAccuracy},
			{"learning_rate", m.LearningRate}, {"images_per_sec", m.ImagesPerSec},
		} {
			var val []byte
			val = protowire.AppendTag(val, 1, protowire.BytesType)
			val = protowire.AppendString(val, kv.tag)
			val = protowire.AppendTag(val, 2, protowire.Fixed32Type)
			val = protowire.AppendFixed32(val, math.Float32bits(float32(kv.v)))
			sum = protowire.AppendTag(sum, 1, protowire.BytesType)
			sum = protowire.AppendBytes(sum, val)
		}
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.Fixed64Type)
		e = protowire.AppendFixed64(e, math.Float64bits(wall))
		e = protowire.AppendTag(e, 2, protowire.VarintType)
		e = protowire.AppendVarint(e, uint64(m.Epoch))
		e = protowire.AppendTag(e, 5, protowire.BytesType)
		e = protowire.AppendBytes(e, sum)
		writeRecord(&out, e)
	}
	return out.Bytes()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}

func writeRecord(w *bytes.Buffer, data []byte) {
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(len(data)))
	w.Write(hdr[:])
	_ = binary.Write(w, binary.LittleEndian, maskedCRC(hdr[:]))
	w.Write(data)
	_ = binary.Write(w, binary.LittleEndian, maskedCRC(data))
}

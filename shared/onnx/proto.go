package onnx

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers from onnx.proto (ONNX IR version 8+).
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelDocString       = 6
	modelGraph           = 7
	modelOpsetImport     = 8
	modelMetadataProps   = 14

	opsetDomain  = 1
	opsetVersion = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphDocString   = 10
	graphInput       = 11
	graphOutput      = 12

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5

	attrName   = 1
	attrF      = 2
	attrI      = 3
	attrInts   = 8
	attrType   = 20
	attrTFloat = 1
	attrTInt   = 2
	attrTInts  = 7

	tensorDims     = 1
	tensorDataType = 2
	tensorName     = 8
	tensorRawData  = 9
	dataTypeFloat  = 1
	dataTypeInt64  = 7

	valueInfoName = 1
	valueInfoType = 2

	typeTensorType  = 1
	tensorElemType  = 1
	tensorShape     = 2
	shapeDim        = 1
	dimValue        = 1
	dimParam        = 2
	stringEntryKey  = 1
	stringEntryVals = 2
)

// msg is a protobuf message under construction.
type msg []byte

func (m *msg) str(field protowire.Number, s string) {
	*m = protowire.AppendTag(*m, field, protowire.BytesType)
	*m = protowire.AppendString(*m, s)
}

func (m *msg) bytes(field protowire.Number, b []byte) {
	*m = protowire.AppendTag(*m, field, protowire.BytesType)
	*m = protowire.AppendBytes(*m, b)
}

func (m *msg) sub(field protowire.Number, sub msg) { m.bytes(field, sub) }

func (m *msg) varint(field protowire.Number, v int64) {
	*m = protowire.AppendTag(*m, field, protowire.VarintType)
	*m = protowire.AppendVarint(*m, uint64(v))
}

func (m *msg) float(field protowire.Number, f float32) {
	*m = protowire.AppendTag(*m, field, protowire.Fixed32Type)
	*m = protowire.AppendFixed32(*m, math.Float32bits(f))
}

// packedInts writes a packed repeated int64 field.
func (m *msg) packedInts(field protowire.Number, vs []int64) {
	var p []byte
	for _, v := range vs {
		p = protowire.AppendVarint(p, uint64(v))
	}
	m.bytes(field, p)
}

// tensorProto encodes a float32 initializer (raw little-endian data).
func tensorProto(name string, dims []int64, data []float32) msg {
	var t msg
	t.packedInts(tensorDims, dims)
	t.varint(tensorDataType, dataTypeFloat)
	t.str(tensorName, name)
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	t.bytes(tensorRawData, raw)
	return t
}

// int64TensorProto encodes an int64 initializer.
func int64TensorProto(name string, dims []int64, data []int64) msg {
	var t msg
	t.packedInts(tensorDims, dims)
	t.varint(tensorDataType, dataTypeInt64)
	t.str(tensorName, name)
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	t.bytes(tensorRawData, raw)
	return t
}

// valueInfo describes a float tensor; a negative dimension is symbolic,
// named by params.
func valueInfo(name string, dims []int64, params []string) msg {
	var shape msg
	for i, d := range dims {
		var dm msg
		if d < 0 {
			dm.str(dimParam, params[i])
		} else {
			dm.varint(dimValue, d)
		}
		shape.sub(shapeDim, dm)
	}
	var tt msg
	tt.varint(tensorElemType, dataTypeFloat)
	tt.sub(tensorShape, shape)
	var tp msg
	tp.sub(typeTensorType, tt)
	var vi msg
	vi.str(valueInfoName, name)
	vi.sub(valueInfoType, tp)
	return vi
}

// attribute is one node attribute.
type attribute struct {
	name string
	i    *int64
	f    *float32
	ints []int64
}

func intAttr(name string, v int64) attribute     { return attribute{name: name, i: &v} }
func floatAttr(name string, v float32) attribute { return attribute{name: name, f: &v} }
func intsAttr(name string, v ...int64) attribute { return attribute{name: name, ints: v} }

func (a attribute) encode() msg {
	var m msg
	m.str(attrName, a.name)
	switch {
	case a.i != nil:
		m.varint(attrI, *a.i)
		m.varint(attrType, attrTInt)
	case a.f != nil:
		m.float(attrF, *a.f)
		m.varint(attrType, attrTFloat)
	default:
		m.packedInts(attrInts, a.ints)
		m.varint(attrType, attrTInts)
	}
	return m
}

func nodeProto(name, op string, inputs, outputs []string, attrs ...attribute) msg {
	var n msg
	for _, in := range inputs {
		n.str(nodeInput, in)
	}
	for _, out := range outputs {
		n.str(nodeOutput, out)
	}
	n.str(nodeName, name)
	n.str(nodeOpType, op)
	for _, a := range attrs {
		n.sub(nodeAttribute, a.encode())
	}
	return n
}

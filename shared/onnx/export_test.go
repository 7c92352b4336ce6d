package onnx

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func randSlice(r *rand.Rand, n int, lo, hi float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = lo + (hi-lo)*r.Float32()
	}
	return v
}

// convNHWC is a reference 3x3 same convolution with [kh][kw][in][out]
// weights followed by inference batch norm.
func convNHWC(x []float32, h, w int, c Conv) []float64 {
	out := make([]float64, h*w*c.Out)
	for y := range h {
		for xx := range w {
			for o := range c.Out {
				var s float64
				for ky := range 3 {
					for kx := range 3 {
						iy, ix := y+ky-1, xx+kx-1
						if iy < 0 || ix < 0 || iy >= h || ix >= w {
							continue
						}
						for i := range c.In {
							s += float64(x[(iy*w+ix)*c.In+i]) * float64(c.Weights[((ky*3+kx)*c.In+i)*c.Out+o])
						}
					}
				}
				if bn := c.BN; bn != nil {
					s = (s-float64(bn.Mean[o]))/math.Sqrt(float64(bn.Var[o])+bn.Epsilon)*float64(bn.Gamma[o]) + float64(bn.Beta[o])
				}
				out[(y*w+xx)*c.Out+o] = s
			}
		}
	}
	return out
}

// convNCHW is ONNX Conv semantics with OIHW weights and a bias.
func convNCHW(x []float32, h, w, in, outC int, wt, bias []float32) []float64 {
	out := make([]float64, outC*h*w)
	for o := range outC {
		for y := range h {
			for xx := range w {
				s := float64(bias[o])
				for i := range in {
					for ky := range 3 {
						for kx := range 3 {
							iy, ix := y+ky-1, xx+kx-1
							if iy < 0 || ix < 0 || iy >= h || ix >= w {
								continue
							}
							s += float64(x[(i*h+iy)*w+ix]) * float64(wt[((o*in+i)*3+ky)*3+kx])
						}
					}
				}
				out[(o*h+y)*w+xx] = s
			}
		}
	}
	return out
}

func TestTransposeAndFold(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const h, w, in, out = 5, 4, 3, 6
	c := Conv{In: in, Out: out, Weights: randSlice(r, 9*in*out, -1, 1), BN: &BatchNorm{
		Gamma: randSlice(r, out, 0.5, 2), Beta: randSlice(r, out, -1, 1),
		Mean: randSlice(r, out, -1, 1), Var: randSlice(r, out, 0.1, 3), Epsilon: 1e-3}}
	xNHWC := randSlice(r, h*w*in, -1, 1)
	xNCHW := make([]float32, len(xNHWC))
	for y := range h {
		for xx := range w {
			for i := range in {
				xNCHW[(i*h+y)*w+xx] = xNHWC[(y*w+xx)*in+i]
			}
		}
	}
	want := convNHWC(xNHWC, h, w, c)
	fw, fb := fold(c, toOIHW(c))
	got := convNCHW(xNCHW, h, w, in, out, fw, fb)
	for y := range h {
		for xx := range w {
			for o := range out {
				a, b := want[(y*w+xx)*out+o], got[(o*h+y)*w+xx]
				if math.Abs(a-b) > 1e-5 {
					t.Fatalf("(%d,%d,%d): %v vs %v", y, xx, o, a, b)
				}
			}
		}
	}
}

func TestExportIsWellFormed(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	net := &Net{InputSize: 8, InputName: "input", OutputName: "logits",
		Blocks: [][]Conv{{{In: 3, Out: 4, Weights: randSlice(r, 9*3*4, -1, 1), Bias: randSlice(r, 4, -1, 1)}}},
		Head:   Dense{In: 4, Out: 2, Weights: randSlice(r, 8, -1, 1), Bias: randSlice(r, 2, -1, 1)}}
	for _, fold := range []bool{true, false} {
		b, err := Export(net, Options{FoldBatchNorm: fold, Metadata: map[string]string{"k": "v"}})
		if err != nil {
			t.Fatal(err)
		}
		fields := map[protowire.Number]int{}
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				t.Fatal(protowire.ParseError(n))
			}
			b = b[n:]
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				t.Fatal(protowire.ParseError(m))
			}
			b = b[m:]
			fields[num]++
		}
		if fields[modelIRVersion] != 1 || fields[modelGraph] != 1 || fields[modelOpsetImport] != 1 || fields[modelMetadataProps] != 1 {
			t.Fatalf("top-level fields %v", fields)
		}
	}
	net.Head.In = 5
	if _, err := Export(net, Options{}); err == nil {
		t.Fatal("shape mismatch not detected")
	}
}

func TestParseInputSpace(t *testing.T) {
	tests := []struct {
		space   string
		want    []string
		wantErr string
	}{
		{space: "", want: []string{""}},
		{space: InputLog, want: []string{InputLog}},
		{space: "linear+log-chroma", want: []string{"", InputLogChroma}},
		{space: "log+linear+log-chroma", want: []string{InputLog, "", InputLogChroma}},
		{space: "linear+log-chroma-black", want: []string{"", InputLogChromaBlack}},
		{space: InputLinear, want: []string{""}},
		{space: "log+", wantErr: `"" is not`},
		{space: "log+srgb", wantErr: `"srgb" is not`},
		{space: "log+log", wantErr: "twice"},
	}
	for _, tt := range tests {
		got, err := ParseInputSpace(tt.space)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseInputSpace(%q) error %v, want %q", tt.space, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseInputSpace(%q) = %q, %v; want %q", tt.space, got, err, tt.want)
		}
	}
}

// TestInputStackChannels: a stack's first convolution takes three channels
// per space, and Export refuses one built for three.
func TestInputStackChannels(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	net := func(in int) *Net {
		n := &Net{InputSize: 2, InputNormEpsilon: 0.01, InputName: "x", OutputName: "y",
			Blocks: [][]Conv{{{In: in, Out: 4, Weights: randSlice(r, 9*in*4, -1, 1), Bias: randSlice(r, 4, -1, 1)}}},
			Head:   Dense{In: 4, Out: 2, Weights: randSlice(r, 8, -1, 1), Bias: randSlice(r, 2, -1, 1)}}
		if err := n.SetInputSpace("linear+log", PixelScale{Scale: [3]float32{1, 1, 1}}, 0.05); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := Export(net(6), Options{}); err != nil {
		t.Fatalf("6-channel stack: %v", err)
	}
	if _, err := Export(net(3), Options{}); err == nil || !strings.Contains(err.Error(), "want 6") {
		t.Fatalf("3-channel conv under a 2-space stack: err %v", err)
	}
}

// TestBlackNeedsPerChannel: SetInputSpace makes log-chroma-black per
// channel; a hand-built LogInput above black without it is refused, since
// only the per-channel mean removes the gain the black level leaves.
func TestBlackNeedsPerChannel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	n := &Net{InputSize: 2, InputNormEpsilon: 0.01, InputName: "x", OutputName: "y",
		Blocks: [][]Conv{{{In: 3, Out: 4, Weights: randSlice(r, 9*3*4, -1, 1), Bias: randSlice(r, 4, -1, 1)}}},
		Head:   Dense{In: 4, Out: 2, Weights: randSlice(r, 8, -1, 1), Bias: randSlice(r, 2, -1, 1)}}
	if err := n.SetInputSpace(InputLogChromaBlack, PixelScale{Scale: [3]float32{1, 1, 1}}, 0.05); err != nil {
		t.Fatal(err)
	}
	if l := n.InputLog; l == nil || !l.Black || !l.PerChannel {
		t.Fatalf("SetInputSpace(%q) gave %+v", InputLogChromaBlack, n.InputLog)
	}
	if _, err := Export(n, Options{}); err != nil {
		t.Fatalf("export: %v", err)
	}
	n.InputLog.PerChannel = false
	if _, err := Export(n, Options{}); err == nil || !strings.Contains(err.Error(), "PerChannel") {
		t.Fatalf("black without PerChannel: err %v", err)
	}
}

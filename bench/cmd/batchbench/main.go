// Command batchbench measures the batch prediction job (functions/cmd/batch)
// on this machine: N generated JPEGs in fake-gcs-server, the job run by the
// Cloud Run stand-in (infra/runlocal) as task processes, and
//
//   - throughput: interleaved rounds of 1 task and K tasks (each task
//     GOMAXPROCS=1, as a 1-vCPU Cloud Run task), each into a fresh results
//     bucket, checking that every object got exactly one result. Beside the
//     wall rate it prints what load does not change: each task's CPU and
//     busy share, images per job CPU-second (equal for 1 and K tasks when
//     nothing serialises them) and fake-gcs-server's CPU per image, which
//     shares the cores unless -gcs-cpus moves it off -task-cpus;
//
//   - CPU per image: the task processes' user+system time (reaped
//     children's rusage, start-up included) over the images, against the
//     same images in this process: bytes in memory, Predict's JSON "uris"
//     mode (read from the same fake-gcs-server; the target's baseline),
//     result writes alone, and PredictOnUpload (the job's work per object);
//
//   - memory: the largest task's peak RSS, from the run summary (run with
//     two -n to see that it does not grow with the prefix);
//
//   - -kill: task 0 killed midway (no retries), then the run restarted as a
//     new execution: one result per object, and the restart skips exactly
//     what the killed run wrote.
//
//     go run ./bench/cmd/batchbench -n 2000 -tasks 2 -rounds 3
//     go run ./bench/cmd/batchbench -n 2000 -rounds 3 -task-cpus 0,1 -gcs-cpus 2-7   # 8+ cores
//     go run ./bench/cmd/batchbench -n 10000 -tasks 2 -kill
//
// fake-gcs-server's memory backend scans a bucket's objects on every read
// and write, under one lock, so its CPU per object grows with the bucket:
// uploading and classifying 10,000 images costs it far more per image
// than 2,000 (see README, batch prediction).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"cloud.google.com/go/storage"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/infra/runlocal"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/events"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/results"
)

func main() {
	n := flag.Int("n", 10000, "generated images under the prefix")
	tasks := flag.Int("tasks", 2, "task count of the parallel runs")
	rounds := flag.Int("rounds", 3, "interleaved rounds (1 task, then -tasks tasks; the order alternates)")
	workers := flag.Int("workers", 4, "WORKERS per task (objects in flight)")
	kill := flag.Bool("kill", false, "instead: kill task 0 midway, restart the run, check nothing was written twice")
	profile := flag.String("cpuprofile", "", "write each task's CPU profile into this directory (ORCHARD_CPUPROFILE)")
	baselines := flag.Bool("baselines", true, "after the throughput rounds, measure the in-process baselines")
	taskCPUs := flag.String("task-cpus", "", "run the tasks on these CPUs only (taskset list, e.g. 0,1): with -gcs-cpus, the 2-tasks-on-2-cores measurement")
	gcsCPUs := flag.String("gcs-cpus", "", "move fake-gcs-server onto these CPUs (taskset list, e.g. 2-7), off the tasks' cores")
	extraEnv := flag.String("env", "", "extra task environment, comma-separated KEY=VALUE (e.g. GOGC=200)")
	photos := flag.String("photos", "", "upload these JPEGs (DIR/<class>/*.jpg, cycled to -n objects) instead of generated ones, e.g. ../shared/datasets/fruits360-10/photos")
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("batchbench: ")
	ctx := context.Background()

	work, err := os.MkdirTemp("", "batchbench")
	check(err)
	defer os.RemoveAll(work)
	modelDir := filepath.Join(work, "model")
	check(writeDefaultModel(modelDir))
	bin := filepath.Join(work, "batch")
	log.Print("building ./functions/cmd/batch")
	build := exec.Command("go", "build", "-o", bin, "./functions/cmd/batch")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	check(build.Run())

	g, err := emulators.StartGCS(ctx)
	check(err)
	defer g.Close()
	// As the tasks' client (functions/cmd/batch): no OpenTelemetry
	// transport, so the in-process baselines pay what the tasks pay.
	c, err := g.Client(ctx, option.WithTelemetryDisabled())
	check(err)
	check(c.Bucket("src").Create(ctx, "p", nil))
	gcsPID := childPID("fake-gcs-server")
	if *gcsCPUs != "" {
		pin := exec.Command("taskset", "-a", "-p", "-c", *gcsCPUs, fmt.Sprint(gcsPID))
		pin.Stdout, pin.Stderr = os.Stderr, os.Stderr
		check(pin.Run())
	}
	gcs0 := procCPU(gcsPID)
	gen := genJPEG
	if *photos != "" {
		gen = photoSource(*photos)
	}
	names := upload(ctx, c, *n, gen)
	log.Printf("fake-gcs-server CPU during the upload: %.2f ms/image (its memory backend scans the bucket on every write)",
		float64((procCPU(gcsPID)-gcs0).Microseconds())/1000/float64(*n))

	env := []string{"STORAGE_EMULATOR_HOST=" + g.Host, "MODEL_URI=file://" + modelDir, fmt.Sprintf("WORKERS=%d", *workers)}
	if *extraEnv != "" {
		env = append(env, strings.Split(*extraEnv, ",")...)
	}
	srv := startRunner(bin, env, *profile, *taskCPUs)
	defer srv.Close()
	b := &bench{ctx: ctx, c: c, srv: srv, names: names, gcsPID: gcsPID, gcsCPUs: *gcsCPUs}
	if *taskCPUs != "" {
		b.taskCPUs = cpuList(*taskCPUs)
	}
	if *kill {
		b.killAndRestart(*tasks)
		return
	}
	b.throughput(*tasks, *rounds)
	if *baselines {
		b.baseline(modelDir, *rounds)
	}
}

// startRunner starts the Cloud Run stand-in with the job: tasks of
// GOMAXPROCS=1 (a 1-vCPU task) logging warnings only, with env added, a
// CPU profile each into profileDir and on taskCPUs if set.
func startRunner(bin string, env []string, profileDir, taskCPUs string) *runlocal.Server {
	env = append([]string{"GOMAXPROCS=1", "LOG_LEVEL=warn", "ORT_LIB=" + os.Getenv("ORT_LIB")}, env...)
	if profileDir != "" {
		dir, err := filepath.Abs(profileDir)
		check(err)
		check(os.MkdirAll(dir, 0o755))
		env = append(env, "ORCHARD_CPUPROFILE="+dir)
	}
	command := []string{bin}
	if taskCPUs != "" {
		command = []string{"taskset", "-c", taskCPUs, bin}
	}
	srv, err := runlocal.NewServer(runlocal.Config{Project: "p", Region: "local", KillGrace: time.Second, Env: env,
		Jobs: map[string]runlocal.Job{"batch": {Command: command, TaskCount: 1}}})
	check(err)
	return srv
}

type bench struct {
	ctx    context.Context
	c      *storage.Client
	srv    *runlocal.Server
	names  []string
	bucket int
	gcsPID int
	// taskCPUs are the CPUs the tasks run on (-task-cpus; nil: all),
	// gcsCPUs fake-gcs-server's (-gcs-cpus; "": it shares them).
	taskCPUs []int
	gcsCPUs  string
}

// cpuList parses a taskset CPU list such as "0,1" or "0-3,6".
func cpuList(s string) []int {
	var out []int
	for _, part := range strings.Split(s, ",") {
		var lo, hi int
		if _, err := fmt.Sscanf(part, "%d-%d", &lo, &hi); err != nil {
			_, err := fmt.Sscanf(part, "%d", &lo)
			check(err)
			hi = lo
		}
		for c := lo; c <= hi; c++ {
			out = append(out, c)
		}
	}
	return out
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func writeDefaultModel(dir string) error {
	m, err := modeltest.CNN(modeltest.CNNOptions{})
	if err != nil {
		return err
	}
	st, err := (*blob.Opener)(nil).Open(context.Background(), dir) // a local directory
	if err != nil {
		return err
	}
	return m.Save(context.Background(), st)
}

// upload writes n JPEGs made by gen under photos/<class>/, 16 at a time.
func upload(ctx context.Context, c *storage.Client, n int, gen func(r *rand.Rand, i int) (string, []byte)) []string {
	t0 := time.Now()
	names := make([]string, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range next {
				class, data := gen(r, i)
				names[i] = fmt.Sprintf("photos/%s/%06d.jpg", class, i)
				put(ctx, c, names[i], data)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	log.Printf("uploaded %d images in %s", n, time.Since(t0).Round(time.Millisecond))
	return names
}

// photoSource reads dir/<class>/*.jpg and gives object i the photo i
// modulo their count, under its class.
func photoSource(dir string) func(*rand.Rand, int) (string, []byte) {
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.jpg"))
	check(err)
	if len(files) == 0 {
		log.Fatalf("-photos %s: no DIR/<class>/*.jpg", dir)
	}
	slices.Sort(files)
	data := make([][]byte, len(files))
	for i, f := range files {
		data[i], err = os.ReadFile(f)
		check(err)
	}
	return func(_ *rand.Rand, i int) (string, []byte) {
		return filepath.Base(filepath.Dir(files[i%len(files)])), data[i%len(files)]
	}
}

// genJPEG makes a small JPEG (a random rectangle on a random background,
// 64-128 px a side) for class i modulo 10.
func genJPEG(r *rand.Rand, i int) (string, []byte) {
	w, h := 64+r.IntN(64), 64+r.IntN(64)
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	bg := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	fg := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	x0, y0, x1, y1 := r.IntN(w/2), r.IntN(h/2), w/2+r.IntN(w/2), h/2+r.IntN(h/2)
	for y := range h {
		for x := range w {
			col := bg
			if x >= x0 && x < x1 && y >= y0 && y < y1 {
				col = fg
			}
			m.SetRGBA(x, y, col)
		}
	}
	var b bytes.Buffer
	check(jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}))
	return fmt.Sprintf("class%d", i%10), b.Bytes()
}

func put(ctx context.Context, c *storage.Client, name string, data []byte) {
	w := c.Bucket("src").Object(name).NewWriter(ctx)
	w.ContentType = "image/jpeg"
	w.ChunkSize = 0 // one request; no 16 MiB buffer per object
	_, err := w.Write(data)
	check(err)
	check(w.Close())
}

// newBucket makes a fresh results bucket.
func (b *bench) newBucket() string {
	b.bucket++
	name := fmt.Sprintf("results-%d", b.bucket)
	check(b.c.Bucket(name).Create(b.ctx, "p", nil))
	return name
}

// measured is one run of the job.
type measured struct {
	ex    *runpb.Execution
	wall  time.Duration
	cpu   time.Duration    // the task processes' user+system (reaped children's rusage)
	sys   time.Duration    // of which system
	gcs   time.Duration    // fake-gcs-server's user+system during the run
	sum   *batch.Summary   // the run summary (nil if none was written)
	tasks []*batch.Summary // the task summaries
}

// run executes the job with tasks tasks into results.
func (b *bench) run(tasks, retries int, results string, during func(*runpb.Execution)) measured {
	before, gcs0 := childUsage(), b.gcsCPU()
	t0 := time.Now()
	op, err := b.srv.RunJob(b.ctx, &runpb.RunJobRequest{Name: b.srv.JobName("batch"), Overrides: &runpb.RunJobRequest_Overrides{
		TaskCount: int32(tasks), ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{Env: []*runpb.EnvVar{
			env(batch.PrefixEnv, "gs://src/photos/"), env("RESULTS_BUCKET", results)}}}}})
	check(err)
	var ex runpb.Execution
	check(op.GetMetadata().UnmarshalTo(&ex))
	if during != nil {
		during(&ex)
	}
	done, err := b.srv.Wait(b.ctx, ex.GetName())
	check(err)
	m := measured{ex: done, wall: time.Since(t0), gcs: b.gcsCPU() - gcs0}
	after := childUsage()
	m.cpu = cpuOf(after) - cpuOf(before)
	m.sys = time.Duration(after.Stime.Nano() - before.Stime.Nano())
	st := blob.NewGCS(b.c, results, "")
	m.tasks, err = batch.ReadTaskSummaries(b.ctx, st, done.GetUid())
	check(err)
	if raw, _, err := st.Read(b.ctx, batch.SummaryKey(done.GetUid()), 1<<20); err == nil {
		var sum batch.Summary
		check(json.Unmarshal(raw, &sum))
		m.sum = &sum
	}
	return m
}

// startCPU is the tasks' CPU before their first object (start-up, model
// load), as their summaries report it.
func (m measured) startCPU() time.Duration {
	var d float64
	for _, t := range m.tasks {
		d += t.StartCPUSeconds
	}
	return time.Duration(d * float64(time.Second))
}

// perTask is each task's CPU seconds, start-up CPU and busy share (CPU
// over its wall time), as its summary reports them.
func (m measured) perTask() string {
	var parts []string
	for _, t := range m.tasks {
		busy := 0.0
		if t.Seconds > 0 {
			busy = t.CPUSeconds / t.Seconds
		}
		parts = append(parts, fmt.Sprintf("task %d: %d images, %.2f s CPU (start-up %.2f), %.0f%% busy", *t.Task, t.Processed(), t.CPUSeconds, t.StartCPUSeconds, 100*busy))
	}
	return strings.Join(parts, "; ")
}

func env(k, v string) *runpb.EnvVar {
	return &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: v}}
}

func childUsage() syscall.Rusage {
	var u syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_CHILDREN, &u))
	return u
}

func selfUsage() syscall.Rusage {
	var u syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &u))
	return u
}

func cpuOf(u syscall.Rusage) time.Duration {
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// gcsCPU is fake-gcs-server's user+system time so far. It shares the
// cores with the tasks unless -gcs-cpus moves it, so it bounds the
// throughput here.
func (b *bench) gcsCPU() time.Duration { return procCPU(b.gcsPID) }

// procCPU is process pid's user+system time so far, from /proc (0 if it
// cannot be read).
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which ends at the last ')'): state is
	// field 3, utime and stime fields 14 and 15, in clock ticks (100/s).
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// childPID is the pid of this process's child named comm, or 0.
func childPID(comm string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		raw, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
		if open < 0 || end < open || string(raw[open+1:end]) != comm {
			continue
		}
		f := strings.Fields(string(raw[end+1:]))
		var pid, ppid int
		fmt.Sscan(string(raw[:open]), &pid)
		if len(f) > 1 {
			fmt.Sscan(f[1], &ppid)
		}
		if ppid == os.Getpid() {
			return pid
		}
	}
	return 0
}

// round is one throughput run's figures.
type round struct {
	tasks          int
	rate           float64 // images per wall second
	cpuPer, gcsPer float64 // ms of job CPU and of fake-gcs-server CPU per image
	afterStart     float64 // ms of job CPU per image, the tasks' start-up left out
	perCPUSecond   float64 // images per second of job CPU
	rss            int64
}

// throughput runs interleaved rounds of 1 and k tasks, each into a fresh
// results bucket. Wall throughput here shares the cores with
// fake-gcs-server and whatever else runs; the CPU figures do not depend on
// that: images per job CPU-second equal for 1 and k tasks means nothing
// serialises the tasks, and the fake-gcs-server share says how much of the
// machine the stand-in for GCS takes.
func (b *bench) throughput(k, rounds int) {
	var one, many []round
	for r := range rounds {
		order := []int{1, k}
		if r%2 == 1 {
			order = []int{k, 1}
		}
		for _, tasks := range order {
			bucket := b.newBucket()
			m := b.run(tasks, 0, bucket, nil)
			if m.ex.GetSucceededCount() != int32(tasks) {
				log.Fatalf("round %d, %d tasks: %d succeeded (logs %s)", r, tasks, m.ex.GetSucceededCount(), m.ex.GetLogUri())
			}
			b.checkOneResultEach(bucket)
			n := float64(len(b.names))
			x := round{tasks: tasks, rate: n / m.wall.Seconds(), cpuPer: float64(m.cpu.Microseconds()) / 1000 / n,
				gcsPer: float64(m.gcs.Microseconds()) / 1000 / n, perCPUSecond: n / m.cpu.Seconds()}
			if m.sum != nil {
				x.rss = m.sum.PeakRSS
			}
			x.afterStart = x.cpuPer - m.startCPU().Seconds()*1000/n
			log.Printf("round %d: %d task(s): %.0f images/s wall (%.1f s); job CPU %.3f ms/image (%.3f after start-up, system %.0f%%, %.0f images per CPU-second); fake-gcs-server CPU %.3f ms/image; largest task peak RSS %.0f MiB; load %s",
				r, tasks, x.rate, m.wall.Seconds(), x.cpuPer, x.afterStart, 100*m.sys.Seconds()/m.cpu.Seconds(), x.perCPUSecond, x.gcsPer, float64(x.rss)/(1<<20), loadavg())
			log.Printf("  %s: %s", m.ex.GetUid(), m.perTask())
			if tasks == 1 {
				one = append(one, x)
			} else {
				many = append(many, x)
			}
		}
	}
	field := func(xs []round, f func(round) float64) []float64 {
		var out []float64
		for _, x := range xs {
			out = append(out, f(x))
		}
		return out
	}
	rate := func(x round) float64 { return x.rate }
	perCPU := func(x round) float64 { return x.perCPUSecond }
	var ratios, cpuRatios []float64
	for i := range one {
		ratios = append(ratios, many[i].rate/one[i].rate)
		cpuRatios = append(cpuRatios, many[i].perCPUSecond/one[i].perCPUSecond)
	}
	log.Printf("throughput (wall): 1 task median %.0f images/s, %d tasks median %.0f images/s; per-round ratios %v, median %.2fx",
		median(field(one, rate)), k, median(field(many, rate)), round2(ratios), median(ratios))
	log.Printf("images per job CPU-second: 1 task median %.0f, %d tasks median %.0f; per-round ratios %v, median %.2fx (1.00x: the tasks do not slow each other down)",
		median(field(one, perCPU)), k, median(field(many, perCPU)), round2(cpuRatios), median(cpuRatios))
	all := append(one, many...)
	cpus, gcs := field(all, func(x round) float64 { return x.cpuPer }), field(all, func(x round) float64 { return x.gcsPer })
	after := field(all, func(x round) float64 { return x.afterStart })
	log.Printf("job CPU per image (task processes, user+system): median %.3f ms over %d runs %v, %.3f ms after start-up %v; fake-gcs-server: median %.3f ms/image %v",
		median(cpus), len(cpus), round2(cpus), median(after), round2(after), median(gcs), round2(gcs))
	// A task is bound by its own core (GOMAXPROCS=1): 1/c images per ms;
	// all of them and fake-gcs-server by the cores they share: cores/(c+g).
	c, g, cores := median(cpus), median(gcs), float64(len(b.taskCPUs))
	shared := b.gcsCPUs == ""
	if cores == 0 {
		cores = float64(runtime.NumCPU())
	}
	bound := func(tasks int) float64 {
		r := min(float64(tasks), cores) / c
		if shared {
			r = min(r, cores/(c+g))
		}
		return r
	}
	if c > 0 {
		where := "cores of their own (fake-gcs-server elsewhere)"
		if shared {
			where = "cores shared with fake-gcs-server"
		}
		log.Printf("bound from CPU alone: on %.0f %s, %d tasks reach at most %.2fx one task (c=%.2f ms job, g=%.2f ms fake-gcs-server per image)",
			cores, where, k, bound(k)/bound(1), c, g)
	}
}

// checkOneResultEach lists the results bucket: exactly one result (or
// error record) per source object, and nothing else under photos/.
func (b *bench) checkOneResultEach(bucket string) map[string]string {
	got := map[string]string{}
	it := b.c.Bucket(bucket).Objects(b.ctx, &storage.Query{Prefix: "photos/"})
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		check(err)
		name := strings.TrimSuffix(strings.TrimSuffix(a.Name, results.ErrorSuffix), results.ResultSuffix)
		if _, dup := got[name]; dup {
			log.Fatalf("%s has two results", name)
		}
		got[name] = a.Name
	}
	if len(got) != len(b.names) {
		log.Fatalf("%d results for %d objects in %s", len(got), len(b.names), bucket)
	}
	for _, n := range b.names {
		if _, ok := got[n]; !ok {
			log.Fatalf("%s has no result in %s", n, bucket)
		}
	}
	return got
}

// baseline is the in-process CPU per image of the same images, in this
// process at GOMAXPROCS=1 (as one task), with 4 workers and the same
// model, storage client options and log level as the tasks:
//
//   - bytes: Service.Classify on the bytes in memory (decode, preprocess,
//     classify; no storage);
//   - Predict: the HTTP function's JSON "uris" mode, 256 per request (read
//     from fake-gcs-server, decode, classify): the fair baseline of the
//     target, which writes nothing;
//   - result writes alone: a result-sized JSON object per image, written
//     if absent (the job's conditional write, without the rest);
//   - PredictOnUpload: the upload handler on each object's finalize event
//     into a fresh results bucket (lookup, read, classify, conditional
//     result write): the same work per object as the job.
func (b *bench) baseline(modelDir string, rounds int) {
	check(onnxrt.Init())
	m, err := model.Load(b.ctx, nil, modelDir)
	check(err)
	cl, err := onnxrt.NewClassifier(m, onnxrt.Options{IntraOpThreads: 1})
	check(err)
	defer cl.Close()
	prev := runtime.GOMAXPROCS(1) // as one task
	defer runtime.GOMAXPROCS(prev)
	quiet := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	newApp := func(resultsBucket string) *predict.App {
		cfg := predict.DefaultConfig()
		cfg.Workers, cfg.AllowedBuckets, cfg.MaxObjects, cfg.TopK, cfg.ResultsBucket = 4, []string{"src"}, 256, 5, resultsBucket
		return predict.NewApp(cfg, predict.AppOptions{Provider: modelsource.Static{C: cl}, Storage: b.c, Log: quiet})
	}
	objs, err := blob.Collect(b.ctx, blob.NewGCS(b.c, "src", ""), blob.ListOptions{Prefix: "photos/"}, blob.Limits{})
	check(err)
	data := make([][]byte, len(objs))
	for i, o := range objs {
		data[i], _, err = blob.NewGCS(b.c, "src", "").Read(b.ctx, o.Key, 1<<20)
		check(err)
	}
	app := newApp("")
	defer app.Close()
	ways := []struct {
		name string
		fn   func()
	}{
		{"bytes in memory (Service.Classify)", func() { b.classifyBytes(app, cl, data) }},
		{"Predict (JSON uris, read from fake-gcs-server)", func() { b.predictURIs(app) }},
		{"result writes alone (blob.GCS.Write, if absent, 4 at a time)", func() { b.writeAlone(objs) }},
		{"PredictOnUpload (lookup, read, classify, result write)", func() {
			bucket := b.newBucket()
			a := newApp(bucket)
			defer a.Close()
			b.predictOnUpload(a, objs)
		}},
	}
	for _, w := range ways {
		var cpus []float64
		for r := range rounds {
			u0, g0, t0 := selfUsage(), b.gcsCPU(), time.Now()
			w.fn()
			u1 := selfUsage()
			cpu, gcs := cpuOf(u1)-cpuOf(u0), b.gcsCPU()-g0
			n := float64(len(objs))
			per := float64(cpu.Microseconds()) / 1000 / n
			cpus = append(cpus, per)
			log.Printf("in-process %s round %d: %.3f ms CPU/image (system %.0f%%), %.0f images/s; fake-gcs-server %.3f ms/image; load %s", w.name, r, per,
				100*float64(u1.Stime.Nano()-u0.Stime.Nano())/float64(cpu.Nanoseconds()), n/time.Since(t0).Seconds(), float64(gcs.Microseconds())/1000/n, loadavg())
		}
		log.Printf("in-process %s CPU per image: median %.3f ms %v", w.name, median(cpus), round2(cpus))
	}
}

func (b *bench) classifyBytes(app *predict.App, cl *onnxrt.Classifier, data [][]byte) {
	for i := 0; i < len(data); i += 256 {
		var srcs []predict.Source
		for _, d := range data[i:min(i+256, len(data))] {
			srcs = append(srcs, predict.Source{Data: d})
		}
		for _, c := range app.Service.Classify(b.ctx, cl, srcs, predict.Options{TopK: 5, Via: "bench"}) {
			check(c.Err)
		}
	}
}

func (b *bench) predictURIs(app *predict.App) {
	for i := 0; i < len(b.names); i += 256 {
		var req predict.JSONRequest
		for _, n := range b.names[i:min(i+256, len(b.names))] {
			req.URIs = append(req.URIs, "gs://src/"+n)
		}
		body, _ := json.Marshal(req)
		w := httptest.NewRecorder()
		hr := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		hr.Header.Set("Content-Type", "application/json")
		app.HTTP.ServeHTTP(w, hr)
		if w.Code != http.StatusOK || strings.Contains(w.Body.String(), `"error"`) {
			log.Fatalf("Predict: %d %s", w.Code, w.Body.String()[:min(300, w.Body.Len())])
		}
	}
}

// writeAlone writes a result-sized JSON object per image into a fresh
// bucket, if absent, with the source metadata a result carries.
func (b *bench) writeAlone(objs []blob.Attrs) {
	st := blob.NewGCS(b.c, b.newBucket(), "")
	body := bytes.Repeat([]byte("x"), 600)
	next := make(chan blob.Attrs)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for o := range next {
				_, err := st.Write(b.ctx, o.Key+results.ResultSuffix, body, blob.WriteOptions{IfNotExist: true, ContentType: "application/json",
					Metadata: map[string]string{results.SourceNameKey: o.Key, results.SourceBucketKey: o.Bucket, results.SourceGenerationKey: fmt.Sprint(o.Generation)}})
				check(err)
			}
		})
	}
	for _, o := range objs {
		next <- o
	}
	close(next)
	wg.Wait()
}

// predictOnUpload hands each object's finalize event to the upload
// handler, 4 at a time (the job's WORKERS), checking each was written.
func (b *bench) predictOnUpload(app *predict.App, objs []blob.Attrs) {
	u, err := app.Uploader()
	check(err)
	next := make(chan blob.Attrs)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for o := range next {
				ev := cloudevents.NewEvent()
				ev.SetID("bench/" + o.Key)
				ev.SetType(events.StorageFinalized)
				ev.SetSource(events.StorageSource(o.Bucket))
				ev.SetSubject(events.StorageSubject(o.Key))
				check(ev.SetData(cloudevents.ApplicationJSON, map[string]any{"bucket": o.Bucket, "name": o.Key,
					"generation": fmt.Sprint(o.Generation), "size": fmt.Sprint(o.Size), "contentType": o.ContentType}))
				if out, err := u.Handle(b.ctx, ev); err != nil || out != predict.OutcomeWritten {
					log.Fatalf("PredictOnUpload %s: %s %v", o.Key, out, err)
				}
			}
		})
	}
	for _, o := range objs {
		next <- o
	}
	close(next)
	wg.Wait()
}

// killAndRestart kills task 0 when about half of its shard is done (no
// retries), restarts the run, and checks that the restart skipped exactly
// what the killed run wrote.
func (b *bench) killAndRestart(k int) {
	bucket := b.newBucket()
	var shard0 []string
	for _, n := range b.names {
		if batch.Shard(n, k) == 0 {
			shard0 = append(shard0, n)
		}
	}
	slices.Sort(shard0)
	mid := shard0[len(shard0)/2] + results.ResultSuffix
	m1 := b.run(k, 0, bucket, func(ex *runpb.Execution) {
		for {
			if _, err := b.c.Bucket(bucket).Object(mid).Attrs(b.ctx); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		check(b.srv.KillTask(ex.GetName(), 0))
		log.Printf("killed task 0 of %s once %s existed", ex.GetUid(), mid)
	})
	first := m1.ex
	log.Printf("first run %s: %d succeeded, %d failed, %.1f s, job CPU %.1f s, fake-gcs-server CPU %.1f s; %s", first.GetUid(), first.GetSucceededCount(), first.GetFailedCount(),
		m1.wall.Seconds(), m1.cpu.Seconds(), m1.gcs.Seconds(), m1.perTask())
	byFirst := b.countByExecution(bucket, first.GetUid())
	m2 := b.run(k, 0, bucket, nil)
	second := m2.ex
	log.Printf("restart %s: %d of %d succeeded, %.1f s, job CPU %.1f s, fake-gcs-server CPU %.1f s; %s", second.GetUid(), second.GetSucceededCount(), k,
		m2.wall.Seconds(), m2.cpu.Seconds(), m2.gcs.Seconds(), m2.perTask())
	b.checkOneResultEach(bucket)
	bySecond := b.countByExecution(bucket, second.GetUid())
	if m2.sum == nil {
		log.Fatalf("the restart %s wrote no run summary", second.GetUid())
	}
	sum := m2.sum
	log.Printf("results: %d by the killed run, %d by the restart, %d objects; the restart's summary: written %d, done before %d, images %d, largest task peak RSS %.0f MiB",
		byFirst, bySecond, len(b.names), sum.Written, sum.Done, sum.Images, float64(sum.PeakRSS)/(1<<20))
	if byFirst+bySecond != len(b.names) || sum.Done != int64(byFirst) || sum.Written != int64(bySecond) {
		log.Fatal("an object was written twice or skipped")
	}
	log.Print("ok: every object has exactly one result; the restart wrote only what the killed run had not")
}

// countByExecution counts the results an execution wrote (event_id names it).
func (b *bench) countByExecution(bucket, exec string) int {
	n := 0
	st := blob.NewGCS(b.c, bucket, "")
	as, err := blob.Collect(b.ctx, st, blob.ListOptions{Prefix: "photos/"}, blob.Limits{})
	check(err)
	for _, a := range as {
		raw, _, err := st.Read(b.ctx, a.Key, 1<<20)
		check(err)
		var r results.Upload
		check(json.Unmarshal(raw, &r))
		if strings.HasPrefix(r.EventID, "batch/"+exec+"/") {
			n++
		}
	}
	return n
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round2(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(int(x*100+0.5)) / 100
	}
	return out
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

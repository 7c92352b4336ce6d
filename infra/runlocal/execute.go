package runlocal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orchard-mlops/orchard/shared/proc"
)

// taskEnd is how one attempt ended.
type taskEnd int

const (
	taskSucceeded taskEnd = iota
	taskFailed
	taskCancelled
)

// run drives an execution: tasks Parallelism at a time, each with its
// retries, then the Completed condition.
func (s *Server) run(e *execution) {
	defer s.wg.Done()
	defer close(e.done)
	s.update(e, func(pb *runpb.Execution) { pb.StartTime = timestamppb.Now() })
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		s.finish(e, "opening the log directory: "+err.Error())
		return
	}
	sem := make(chan struct{}, e.pb.GetParallelism())
	var wg sync.WaitGroup
	count := int(e.pb.GetTaskCount())
	for i := range count {
		select {
		case sem <- struct{}{}:
		case <-e.cancelReq:
		}
		if s.isCancelled(e) {
			s.update(e, func(pb *runpb.Execution) { pb.CancelledCount += int32(count - i) })
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s.runTask(e, i)
		})
	}
	wg.Wait()
	s.finish(e, "")
}

func (s *Server) isCancelled(e *execution) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.cancelled
}

func (s *Server) update(e *execution, fn func(*runpb.Execution)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(e.pb)
	e.pb.UpdateTime = timestamppb.Now()
}

// runTask runs a task's attempts until one succeeds, the retries are
// used up, or the execution is cancelled.
func (s *Server) runTask(e *execution, index int) {
	logf, err := os.OpenFile(s.TaskLog(e.id, index), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.update(e, func(pb *runpb.Execution) { pb.FailedCount++ })
		return
	}
	defer logf.Close()
	for attempt := 0; ; attempt++ {
		end := s.attempt(e, index, attempt, logf)
		switch {
		case end == taskSucceeded:
			s.update(e, func(pb *runpb.Execution) { pb.SucceededCount++ })
			return
		case end == taskCancelled:
			s.update(e, func(pb *runpb.Execution) { pb.CancelledCount++ })
			return
		case attempt < e.retries:
			s.update(e, func(pb *runpb.Execution) { pb.RetriedCount++ })
		default:
			s.update(e, func(pb *runpb.Execution) { pb.FailedCount++ })
			return
		}
	}
}

// attempt runs one attempt of a task as a process group.
func (s *Server) attempt(e *execution, index, attempt int, logf *os.File) taskEnd {
	env := append(append(os.Environ(), s.cfg.Env...), e.env...)
	env = append(env, "CLOUD_RUN_JOB="+e.pb.GetJob(), "CLOUD_RUN_EXECUTION="+e.id,
		"CLOUD_RUN_TASK_INDEX="+strconv.Itoa(index), "CLOUD_RUN_TASK_ATTEMPT="+strconv.Itoa(attempt),
		"CLOUD_RUN_TASK_COUNT="+strconv.Itoa(int(e.pb.GetTaskCount())))
	fmt.Fprintf(logf, "runlocal: execution %s task %d attempt %d: %q\n", e.id, index, attempt, e.argv)
	p, err := proc.Start(fmt.Sprintf("%s task %d", e.id, index), e.argv, env, s.cfg.WorkDir, logf)
	if err != nil {
		fmt.Fprintf(logf, "runlocal: start failed: %v\n", err)
		return taskFailed
	}
	s.mu.Lock()
	e.running[index] = p
	s.mu.Unlock()
	s.update(e, func(pb *runpb.Execution) { pb.RunningCount++ })
	defer func() {
		s.mu.Lock()
		delete(e.running, index)
		s.mu.Unlock()
		s.update(e, func(pb *runpb.Execution) { pb.RunningCount-- })
	}()
	t := time.NewTimer(e.timeout)
	defer t.Stop()
	timedOut, cancelled := false, false
	select {
	case <-p.Done():
	case <-e.cancelReq:
		cancelled = true
	case <-t.C:
		timedOut = true
	}
	if err := p.Stop(s.cfg.KillGrace); err != nil {
		s.log.Warn("job task: stopping its process group", "execution", e.id, "task", index, "error", err.Error())
	}
	werr := p.Err()
	fmt.Fprintf(logf, "runlocal: task %d attempt %d exit: %s\n", index, attempt, describe(werr, timedOut, e.timeout))
	switch {
	case cancelled:
		return taskCancelled
	case timedOut || werr != nil:
		return taskFailed
	}
	return taskSucceeded
}

func describe(err error, timedOut bool, timeout time.Duration) string {
	var ee *exec.ExitError
	switch {
	case timedOut:
		return fmt.Sprintf("exceeded its timeout of %s", timeout)
	case err == nil:
		return "succeeded"
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "terminated by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	return err.Error()
}

// finish sets the completion time and the Completed condition.
func (s *Server) finish(e *execution, failure string) {
	var c *runpb.Condition
	s.update(e, func(pb *runpb.Execution) {
		now := timestamppb.Now()
		pb.CompletionTime, pb.Reconciling = now, false
		c = &runpb.Condition{Type: "Completed", LastTransitionTime: now, State: runpb.Condition_CONDITION_SUCCEEDED,
			Message: fmt.Sprintf("Execution completed successfully: %d tasks.", pb.GetSucceededCount())}
		switch {
		case failure != "":
			c.State, c.Message = runpb.Condition_CONDITION_FAILED, failure
		case pb.GetCancelledCount() > 0:
			c.State, c.Message = runpb.Condition_CONDITION_FAILED, fmt.Sprintf("The execution was cancelled: %d tasks cancelled.", pb.GetCancelledCount())
		case pb.GetFailedCount() > 0:
			c.State, c.Message = runpb.Condition_CONDITION_FAILED, fmt.Sprintf("Task(s) failed: %d of %d failed to complete (logs: %s).", pb.GetFailedCount(), pb.GetTaskCount(), pb.GetLogUri())
		}
		pb.Conditions = []*runpb.Condition{c}
	})
	s.log.Info("job execution completed", "execution", e.id, "state", c.GetState().String(), "message", c.GetMessage())
}

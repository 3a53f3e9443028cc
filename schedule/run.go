package schedule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/regcache/regcache/mirror"
)

// outcome is what one run did.
type outcome struct {
	result   Result
	message  string
	images   int
	updated  int
	fetched  int64
	pins     []digest.Digest
	keepPins bool // the run learnt nothing: the pins stay as they were
}

// runRule runs r now (after a run of it in progress) and returns its
// status.
func (s *Scheduler) runRule(ctx context.Context, r *rule, progress func(Progress)) Status {
	r.run.Lock()
	defer r.run.Unlock()
	if s.cfg.BeforeRun != nil {
		s.cfg.BeforeRun()
	}
	start := s.cfg.Now()
	r.mu.Lock()
	r.status.Running = true
	prev := r.status
	wasPaused := prev.Result == ResultPaused
	r.mu.Unlock()

	out := s.sync(ctx, r, progress)
	pinned := 0
	if !out.keepPins {
		if s.pin(r, out.pins) {
			pinned = countDistinct(out.pins)
		}
		// Else the scheduler stopped during the run (a reload, while a
		// run asked for by name went on) and released its pins for good:
		// its rules keep nothing any more.
	}
	end := s.cfg.Now()
	r.mu.Lock()
	st := &r.status
	st.Running = false
	st.LastRun, st.LastDuration = start, end.Sub(start)
	st.Result, st.Message = out.result, out.message
	st.NextRun = s.next(r, end)
	if !out.keepPins {
		st.Images, st.Pinned = out.images, pinned
	}
	st.Updated, st.LastBytes = out.updated, out.fetched
	st.TotalBytes += out.fetched
	st.Runs[out.result]++
	r.mu.Unlock()
	final := r.snapshot()

	fields := []zap.Field{zap.String("rule", r.Name), zap.Int("images", out.images), zap.Int("updated", out.updated),
		zap.Int64("bytes", out.fetched), zap.Duration("duration", final.LastDuration), zap.Time("next_run", final.NextRun)}
	switch out.result {
	case ResultOK:
		msg := "sync rule ran"
		if wasPaused {
			msg = "sync rule resumed and completed"
		}
		s.log.Info(msg, fields...)
	case ResultPaused:
		// Once per episode: the runs that find the budget still spent say
		// so at Debug.
		level := zap.WarnLevel
		if wasPaused {
			level = zap.DebugLevel
		}
		if ce := s.log.Check(level, "sync rule paused: the upstream's pull budget is spent; the next run resumes"); ce != nil {
			ce.Write(append(fields, zap.String("reason", out.message))...)
		}
	default:
		// Once per episode: the same failure again is said at Debug.
		level := zap.WarnLevel
		if prev.Result == ResultFailed && prev.Message == out.message {
			level = zap.DebugLevel
		}
		if ce := s.log.Check(level, "sync rule failed"); ce != nil {
			ce.Write(append(fields, zap.String("error", out.message))...)
		}
	}
	if progress != nil {
		progress(Progress{Rule: r.Name, Finished: &final})
	}
	return final
}

// sync lists the rule's tags, chooses the images and brings each in.
func (s *Scheduler) sync(ctx context.Context, r *rule, progress func(Progress)) outcome {
	repo, image := r.repository()
	images := []string{image}
	if image == "" {
		tags, err := s.cfg.Source.ListTags(ctx, repo)
		if err != nil {
			out := outcome{result: ResultFailed, message: err.Error(), keepPins: true}
			if paused, why := pauseOf(err); paused {
				out.result, out.message = ResultPaused, why
			}
			return out
		}
		images = s.order(repo, r.sel.Select(tags))
	}
	out := outcome{result: ResultOK, images: len(images)}
	failed := 0
	var firstErr error
	for i, img := range images {
		var fetched int64
		ds, err := s.cfg.Source.Sync(ctx, img, r.Platforms, func(p mirror.WarmProgress) {
			fetched = p.FetchedBytes
			if progress != nil {
				progress(Progress{Rule: r.Name, WarmProgress: p})
			}
		})
		out.fetched += fetched
		if fetched > 0 {
			out.updated++
		}
		if err == nil {
			out.pins = append(out.pins, ds...)
			continue
		}
		if paused, why := pauseOf(err); paused {
			// What is left keeps what the cache has of it, until the next
			// run resumes.
			for _, rest := range images[i:] {
				cached, _ := s.cfg.Source.CachedImage(rest)
				out.pins = append(out.pins, cached...)
			}
			out.result = ResultPaused
			out.message = fmt.Sprintf("%s; %d of %d images synced", why, i, len(images))
			return out
		}
		if ctx.Err() != nil {
			out.result, out.message, out.keepPins = ResultFailed, ctx.Err().Error(), true
			return out
		}
		failed++
		if firstErr == nil {
			firstErr = err
		}
		cached, _ := s.cfg.Source.CachedImage(img)
		out.pins = append(out.pins, cached...)
	}
	if failed > 0 {
		out.result = ResultFailed
		out.message = fmt.Sprintf("%d of %d images failed; first: %v", failed, len(images), firstErr)
	}
	return out
}

// order returns the images of a repository's chosen tags, those the cache
// has first: their HEADs cost nothing on Docker Hub and report the pull
// budget (ending a hold of manifest GETs that the budget no longer
// needs) before the new tags' GETs spend it.
func (s *Scheduler) order(repo string, tags []string) []string {
	cached, err := s.cfg.Source.CachedTags(repo)
	if err != nil {
		s.log.Error("reading the cached tags of a sync rule", zap.String("repository", repo), zap.Error(err))
	}
	have := make(map[string]bool, len(cached))
	for _, t := range cached {
		have[t] = true
	}
	images := make([]string, 0, len(tags))
	for _, pass := range []bool{true, false} {
		for _, t := range tags {
			if have[t] == pass {
				images = append(images, repo+":"+t)
			}
		}
	}
	return images
}

// pauseOf reports whether err means the upstream's pull budget is spent
// (the mirror answered 429: the upstream's own, or its rate_limit_reserve
// holding a manifest GET back), and says so.
func pauseOf(err error) (bool, string) {
	var pe *mirror.PullError
	if !errors.As(err, &pe) || pe.Status != http.StatusTooManyRequests {
		return false, ""
	}
	why := "the upstream's pull budget is spent (429 " + string(pe.Code) + ")"
	if pe.RetryAfter > 0 {
		why += fmt.Sprintf(", retry after %s", pe.RetryAfter.Round(time.Second))
	}
	return true, why
}

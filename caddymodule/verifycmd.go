package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/records"
)

// runVerify is `caddy registry-cache verify`: through the admin API of a
// running Caddy, or, when none answers and --storage names a directory,
// on that directory itself (a stopped mirror; the cache refuses to open
// while a running one holds it).
func runVerify(cmd *cobra.Command, _ []string) error {
	storage, _ := cmd.Flags().GetString("storage")
	repair, _ := cmd.Flags().GetBool("repair")
	rateFlag, _ := cmd.Flags().GetString("rate")
	var rate int64
	if rateFlag != "" {
		r, err := parseSize(rateFlag)
		if err != nil || r == 0 {
			return fmt.Errorf("--rate %q is not a positive size per second", rateFlag)
		}
		rate = r
	}
	if storage != "" {
		abs, err := filepath.Abs(storage)
		if err != nil {
			return fmt.Errorf("resolving --storage %q: %w", storage, err)
		}
		storage = abs
	}
	req := VerifyRequest{Repair: repair, Rate: rate, Storage: storage}
	res, apiErr := verifyThroughAdmin(cmd, req)
	if apiErr != nil {
		if storage == "" {
			return apiErr
		}
		var err error
		res, err = verifyDirectory(cmd.Context(), req)
		if err != nil {
			return fmt.Errorf("%w (the admin API: %w)", err, apiErr)
		}
	}
	return printVerify(cmd.OutOrStdout(), res, repair)
}

// verifyThroughAdmin asks the running Caddy to verify its caches.
func verifyThroughAdmin(cmd *cobra.Command, req VerifyRequest) (VerifyResponse, error) {
	resp, err := adminRequest(cmd, http.MethodPost, "/registry_cache/verify", req)
	if err != nil {
		return VerifyResponse{}, err
	}
	defer resp.Body.Close()
	var res VerifyResponse
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return VerifyResponse{}, fmt.Errorf("reading the answer: %w", err)
	}
	return res, nil
}

// verifyDirectory opens the cache directory of req and verifies it.
func verifyDirectory(ctx context.Context, req VerifyRequest) (VerifyResponse, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Caddy's default logger (stderr): the corrupt objects are logged as
	// a running mirror logs them.
	// With its records attached, so that a removed object's links go too.
	store, err := cache.Open(cache.Options{Dir: req.Storage, ScrubInterval: -1, Logger: caddy.Log().Named("registry_cache.cache"),
		Dependent: records.New()})
	if err != nil {
		return VerifyResponse{}, err
	}
	rep, verr := store.Verify(ctx, cache.VerifyOptions{Repair: req.Repair, Rate: req.Rate})
	if err := store.Close(); err != nil && verr == nil {
		verr = err
	}
	if verr != nil {
		return VerifyResponse{}, fmt.Errorf("verifying %s: %w", req.Storage, verr)
	}
	return VerifyResponse{Caches: []CacheVerify{{Storage: req.Storage, VerifyReport: rep}}}, nil
}

// printVerify writes the report, and fails when corrupt objects were
// found and left in place.
func printVerify(out io.Writer, res VerifyResponse, repair bool) error {
	left := 0
	for _, c := range res.Caches {
		fmt.Fprintf(out, "cache %s: %d objects, %s checked, %d corrupt\n", c.Storage, c.Objects,
			humanize.IBytes(uint64(c.Bytes)), len(c.Corrupt))
		for _, o := range c.Corrupt {
			state := "left in place (use --repair)"
			if o.Removed {
				state = "removed"
			} else {
				left++
			}
			fmt.Fprintf(out, "  CORRUPT %s  %s  %s\n", o.Digest, humanize.IBytes(uint64(o.Size)), state)
		}
		if c.Unreadable > 0 {
			fmt.Fprintf(out, "  %d objects could not be read (see the log)\n", c.Unreadable)
		}
	}
	if left > 0 && !repair {
		return fmt.Errorf("%d corrupt objects found", left)
	}
	return nil
}

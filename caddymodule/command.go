package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/schedule"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "registry-cache",
		Usage: "warm|sync|stats|purge|verify|client-config [--address <admin>] ...",
		Short: "Warms, syncs, reports on, purges and verifies the registry caches of a running Caddy, and prints client set-up",
		Long: `
Talks to the admin API of a running Caddy (--address, default: localhost:2019)
about the registry_cache handlers of its config:

  caddy registry-cache warm [--platform linux/amd64]... IMAGE...
      fetches every manifest and blob of the images into the cache, showing
      progress (blobs and bytes per image); all platforms unless --platform
  caddy registry-cache sync [RULE]
      runs a sync rule of the config now (every rule without RULE, named
      by its image as configured), with the same progress display as warm
  caddy registry-cache stats [--json]
      shows what the caches hold, their hit ratio and the upstreams' health
  caddy registry-cache purge [--repository] IMAGE
      removes an image (or with --repository, the whole repository) and the
      content no other cached image uses
  caddy registry-cache verify [--repair] [--rate 100MiB] [--storage DIR]
      hashes every cached blob and manifest against its digest and lists the
      corrupt ones (exit status 1 when there are any); --repair removes them,
      so that the next pull fetches them again. Without a running Caddy (no
      admin API answers), --storage DIR verifies that directory directly
  caddy registry-cache client-config --mirror URL [--ca FILE] [--registry R]...
      prints Docker's daemon.json, containerd's hosts.toml per upstream and a
      registries.conf for podman and CRI-O that pull through the mirror

IMAGE is docker.io/library/alpine:3.19, alpine:3.19, ghcr.io/owner/app@sha256:…
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.PersistentFlags().String("address", "", "address of Caddy's admin API (default localhost:2019)")
			cmd.PersistentFlags().String("storage", "", "cache directory, when the config has several caches")
			warm := &cobra.Command{
				Use:   "warm [--platform P]... IMAGE...",
				Short: "Fetch images into the cache",
				Args:  cobra.MinimumNArgs(1),
				RunE:  runWarm,
			}
			warm.Flags().StringArrayP("platform", "p", nil, "platform to fetch of multi-platform images (os/arch[/variant]); repeatable")
			syncCmd := &cobra.Command{
				Use:   "sync [RULE]",
				Short: "Run a sync rule now",
				Args:  cobra.MaximumNArgs(1),
				RunE:  runSync,
			}
			stats := &cobra.Command{
				Use:   "stats",
				Short: "Show the caches' figures and the upstreams' health",
				Args:  cobra.NoArgs,
				RunE:  runStats,
			}
			stats.Flags().Bool("json", false, "print the admin API's JSON")
			purge := &cobra.Command{
				Use:   "purge IMAGE",
				Short: "Remove an image or repository from the cache",
				Args:  cobra.ExactArgs(1),
				RunE:  runPurge,
			}
			purge.Flags().Bool("repository", false, "remove the whole repository of IMAGE")
			verify := &cobra.Command{
				Use:   "verify [--repair]",
				Short: "Check every cached object against its digest",
				Args:  cobra.NoArgs,
				RunE:  runVerify,
			}
			verify.Flags().Bool("repair", false, "remove the corrupt objects, so that the next request fetches them again")
			verify.Flags().String("rate", "", "bound the reads to this many bytes per second (100MiB); default: as fast as the disk goes")
			cmd.AddCommand(warm, syncCmd, stats, purge, verify, newClientConfigCommand())
		},
	})
}

// adminRequest sends a request to the admin API named by the command's
// --address flag.
func adminRequest(cmd *cobra.Command, method, uri string, body any) (*http.Response, error) {
	addr, _ := cmd.Flags().GetString("address")
	addr, err := caddycmd.DetermineAdminAPIAddress(addr, nil, "", "")
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	return caddycmd.AdminAPIRequest(addr, method, uri, nil, rd)
}

// runWarm is `caddy registry-cache warm`.
func runWarm(cmd *cobra.Command, images []string) error {
	platforms, _ := cmd.Flags().GetStringArray("platform")
	storage, _ := cmd.Flags().GetString("storage")
	resp, err := adminRequest(cmd, http.MethodPost, "/registry_cache/warm",
		WarmRequest{Images: images, Platforms: platforms, Storage: storage})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	show := newProgressPrinter(cmd.OutOrStdout())
	failed, finished := 0, 0
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var p mirror.WarmProgress
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("reading progress: %w", err)
		}
		show(progressLine(p), p.Done || p.Error != "")
		if p.Error != "" {
			failed++
		}
		if p.Error != "" || p.Done {
			finished++
		}
	}
	if finished < len(images) {
		return fmt.Errorf("the progress stream ended after %d of %d images", finished, len(images))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d images could not be warmed", failed, len(images))
	}
	return nil
}

// newProgressPrinter returns a function that prints progress lines to
// out: on a terminal, each line replaces the one before until a final
// line; elsewhere, one line each.
func newProgressPrinter(out io.Writer) func(line string, final bool) {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return func(line string, final bool) {
		switch {
		case tty && final:
			fmt.Fprintf(out, "\r\033[K%s\n", line)
		case tty:
			fmt.Fprintf(out, "\r\033[K%s", line)
		default:
			fmt.Fprintln(out, line)
		}
	}
}

// progressLine renders one progress report.
func progressLine(p mirror.WarmProgress) string {
	state := "fetching"
	switch {
	case p.Error != "":
		state = "failed: " + p.Error
	case p.Done:
		state = "done"
	}
	return fmt.Sprintf("%s  manifests %d  blobs %d/%d  %s/%s  %s", p.Image, p.Manifests, p.Blobs, p.BlobsTotal,
		humanize.IBytes(uint64(p.Bytes)), humanize.IBytes(uint64(p.BytesTotal)), state)
}

// runSync is `caddy registry-cache sync`.
func runSync(cmd *cobra.Command, args []string) error {
	storage, _ := cmd.Flags().GetString("storage")
	req := SyncRequest{Storage: storage}
	if len(args) == 1 {
		req.Rule = args[0]
	}
	resp, err := adminRequest(cmd, http.MethodPost, "/registry_cache/sync", req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	show := newProgressPrinter(cmd.OutOrStdout())
	var notOK []string
	rules := 0
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var p schedule.Progress
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("reading progress: %w", err)
		}
		if p.Finished == nil {
			show(progressLine(p.WarmProgress), false)
			continue
		}
		rules++
		show(syncLine(*p.Finished), true)
		if p.Finished.Result != schedule.ResultOK {
			notOK = append(notOK, p.Rule)
		}
	}
	if rules == 0 || (req.Rule != "" && rules != 1) {
		return errors.New("the progress stream ended before the rule finished")
	}
	if len(notOK) > 0 {
		return fmt.Errorf("sync did not complete for %s", strings.Join(notOK, ", "))
	}
	return nil
}

// syncLine renders the status of a rule after its run.
func syncLine(st schedule.Status) string {
	line := fmt.Sprintf("%s  %s  %d images, %d updated, %s fetched, next run %s", st.Rule, st.Result, st.Images,
		st.Updated, humanize.IBytes(uint64(st.LastBytes)), humanize.Time(st.NextRun))
	if st.Message != "" {
		line += "\n  " + st.Message
	}
	return line
}

// runStats is `caddy registry-cache stats`.
func runStats(cmd *cobra.Command, _ []string) error {
	resp, err := adminRequest(cmd, http.MethodGet, "/registry_cache/stats", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out := cmd.OutOrStdout()
	if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
		_, err := io.Copy(out, resp.Body)
		return err
	}
	var stats StatsResponse
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		return fmt.Errorf("reading the stats: %w", err)
	}
	for _, c := range stats.Caches {
		fmt.Fprintf(out, "cache %s\n", c.Storage)
		fmt.Fprintf(out, "  disk        %s of %s, %d objects, %d evicted\n", humanize.IBytes(uint64(c.UsedBytes)),
			humanize.IBytes(uint64(c.BudgetBytes)), c.Objects, c.Evictions)
		fmt.Fprintf(out, "  hit ratio   %.1f%%  (%s from cache, %s from upstream)\n", 100*c.HitRatio,
			humanize.IBytes(uint64(c.BytesFromCache)), humanize.IBytes(uint64(c.BytesFromUpstream)))
		for _, kind := range mirror.RequestKinds {
			var parts []string
			for _, result := range mirror.RequestResults {
				parts = append(parts, fmt.Sprintf("%s %d", result, c.Requests[kind][result]))
			}
			fmt.Fprintf(out, "  %-10s  %s\n", kind, strings.Join(parts, ", "))
		}
		fmt.Fprintf(out, "  degraded    %d stale, %d held by pull budget, %d remembered 404s, %d not stored\n",
			c.StaleServes, c.RateLimitHolds, c.NegativeHits, c.NotStored)
		if c.Unwritable {
			fmt.Fprintln(out, "  DISK FULL OR UNWRITABLE: streaming without storing")
		}
		if c.MaxIdleSeconds > 0 || c.PinnedObjects > 0 {
			fmt.Fprintf(out, "  retention   max_idle %s, %d evicted for age, %d objects pinned by sync rules\n",
				durationText(time.Duration(c.MaxIdleSeconds)*time.Second), c.IdleEvictions, c.PinnedObjects)
		}
		for _, st := range c.Sync {
			fmt.Fprintf(out, "  sync        %s\n", syncLine(st))
		}
		for _, u := range c.Upstreams {
			budget := ""
			if u.RateLimit != nil {
				budget = fmt.Sprintf("  pull budget %d/%d", u.RateLimit.Remaining, u.RateLimit.Limit)
				if u.RateLimit.Held {
					budget += " (held)"
				}
			}
			fmt.Fprintf(out, "  upstream %s%s\n", u.Name, budget)
			for _, ep := range u.Endpoints {
				health := "healthy"
				if !ep.Healthy {
					health = "failing: " + ep.LastError
				}
				fmt.Fprintf(out, "    %s  %s\n", ep.URL, health)
			}
		}
	}
	return nil
}

// runPurge is `caddy registry-cache purge`.
func runPurge(cmd *cobra.Command, args []string) error {
	storage, _ := cmd.Flags().GetString("storage")
	req := PurgeRequest{Image: args[0], Storage: storage}
	if whole, _ := cmd.Flags().GetBool("repository"); whole {
		req = PurgeRequest{Repository: args[0], Storage: storage}
	}
	resp, err := adminRequest(cmd, http.MethodPost, "/registry_cache/purge", req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res PurgeResponse
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	for _, c := range res.Caches {
		fmt.Fprintf(cmd.OutOrStdout(), "%s: removed %d tags, %d objects, %s\n", c.Storage, c.Tags, c.Objects,
			humanize.IBytes(uint64(c.Bytes)))
	}
	return nil
}

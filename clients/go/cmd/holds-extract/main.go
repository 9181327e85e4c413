// Command holds-extract sends one photo and its clicks to the holds endpoint with aws-sdk-go-v2
// and writes the answer into DIR: result.png (or result.webp), mask.png (or mask_rle.json) and
// metadata.json; -follow-up sends more clicks by the first answer's image_id (follow_up_*).
// It prints one JSON line (image_id, cache hits, variant, files). One line on stderr and exit 1
// on any failure.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	holds "../../holds"
)

type flags struct {
	endpoint, image, points, followUp, imageID, out, variant string
	outputs                                                  holds.Outputs
}

// parseFlags reads the command line; a bad flag is an error (one line), -h prints the usage.
func parseFlags(args []string) (flags, error) {
	var f flags
	set := flag.NewFlagSet("holds-extract", flag.ContinueOnError)
	set.SetOutput(io.Discard)
	set.StringVar(&f.endpoint, "endpoint-name", os.Getenv("SAGEMAKER_ENDPOINT_NAME"), "endpoint name (default $SAGEMAKER_ENDPOINT_NAME)")
	set.StringVar(&f.image, "image", "", "photo (JPEG, PNG or WebP)")
	set.StringVar(&f.points, "points", "", "clicks as \"x,y;x,y\" in upright photo pixels (\"!x,y\": not hold)")
	set.StringVar(&f.followUp, "follow-up", "", "more clicks sent afterwards by the answer's image_id")
	set.StringVar(&f.imageID, "image-id", "", "send -points by this image_id instead of a photo")
	set.StringVar(&f.out, "out", ".", "output folder")
	set.StringVar(&f.variant, "target-variant", "", "production variant of an A/B endpoint")
	set.StringVar(&f.outputs.ResultFormat, "result-format", "png", "cut-out: png, webp or none")
	set.StringVar(&f.outputs.MaskFormat, "mask-format", "png", "mask: png, png1, rle or none")
	set.IntVar(&f.outputs.MaxSide, "max-side", 0, "scale the outputs so the longest side fits (0: the photo's size)")
	err := set.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		set.SetOutput(os.Stdout)
		set.PrintDefaults()
		os.Exit(0)
	}
	return f, err
}

func first(ctx context.Context, client *holds.Client, f flags) (*holds.Result, error) {
	points, err := holds.ParsePoints(f.points)
	if err != nil {
		return nil, fmt.Errorf("-points: %w", err)
	}
	opts := holds.Options{Outputs: f.outputs, TargetVariant: f.variant}
	if f.imageID != "" {
		return client.FollowUp(ctx, f.imageID, points, opts)
	}
	if f.image == "" {
		return nil, fmt.Errorf("-image or -image-id is needed")
	}
	image, err := os.ReadFile(f.image)
	if err != nil {
		return nil, err
	}
	return client.Extract(ctx, image, points, opts)
}

func run(f flags) (map[string]any, error) {
	ctx := context.Background()
	client, err := holds.New(ctx, f.endpoint)
	if err != nil {
		return nil, err
	}
	result, err := first(ctx, client, f)
	if err != nil {
		return nil, err
	}
	report := map[string]any{"image_id": result.ImageID, "cache_hit": result.CacheHit, "variant": result.Variant}
	if report["files"], err = save(result, f.out, ""); err != nil {
		return nil, err
	}
	if f.followUp == "" {
		return report, nil
	}
	points, err := holds.ParsePoints(f.followUp)
	if err != nil {
		return nil, fmt.Errorf("-follow-up: %w", err)
	}
	more, err := client.FollowUpOf(ctx, result, points, f.outputs)
	if err != nil {
		return nil, fmt.Errorf("follow-up: %w", err)
	}
	report["follow_up_cache_hit"], report["follow_up_variant"] = more.CacheHit, more.Variant
	report["follow_up_files"], err = save(more, f.out, "follow_up_")
	return report, err
}

// save writes the answer's files into dir, each name starting with stem; it returns their paths.
func save(result *holds.Result, dir, stem string) ([]string, error) {
	files := map[string][]byte{}
	if result.ResultImage != nil {
		files[stem+"result"+extension(result.ResultImage)] = result.ResultImage
	}
	if result.MaskImage != nil {
		files[stem+"mask.png"] = result.MaskImage
	}
	if result.MaskRLE != nil {
		rle, _ := json.Marshal(result.MaskRLE)
		files[stem+"mask_rle.json"] = rle
	}
	meta, _ := json.MarshalIndent(result.Metadata, "", "  ")
	files[stem+"metadata.json"] = meta
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, err
		}
		written = append(written, path)
	}
	sort.Strings(written)
	return written, nil
}

func extension(image []byte) string {
	if strings.HasPrefix(string(image), "RIFF") {
		return ".webp"
	}
	return ".png"
}

func main() {
	f, err := parseFlags(os.Args[1:])
	var report map[string]any
	if err == nil {
		report, err = run(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "holds-extract:", strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
	line, _ := json.Marshal(report)
	fmt.Println(string(line))
}

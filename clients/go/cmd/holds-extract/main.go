// Command holds-extract sends one photo and its clicks to the holds endpoint and writes the
// endpoint's PNG mask to DIR/mask.png. One line on stderr and exit 1 on any failure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sagemakerruntime"
	"github.com/aws/smithy-go"

	holds "../../holds"
)

func parsePoints(text string) ([]holds.Point, error) {
	var points []holds.Point
	for _, pair := range strings.Split(text, ";") {
		xy := strings.Split(pair, ",")
		if len(xy) != 2 {
			return nil, fmt.Errorf("-points wants \"x,y;x,y\", got %q", text)
		}
		x, errX := strconv.ParseFloat(strings.TrimSpace(xy[0]), 64)
		y, errY := strconv.ParseFloat(strings.TrimSpace(xy[1]), 64)
		if errX != nil || errY != nil {
			return nil, fmt.Errorf("-points wants numbers, got %q", pair)
		}
		points = append(points, holds.Point{X: x, Y: y})
	}
	return points, nil
}

func run(endpoint, imagePath, pointsText, outDir string) error {
	image, err := os.ReadFile(imagePath)
	if err != nil {
		return err
	}
	points, err := parsePoints(pointsText)
	if err != nil {
		return err
	}
	req, err := holds.BuildRequest(image, points, holds.MaxPayloadBytes)
	if err != nil {
		return err
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		return err
	}
	opts := func(o *sagemakerruntime.Options) {
		if url := os.Getenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"); url != "" {
			o.EndpointResolver = sagemakerruntime.EndpointResolverFromURL(url)
		}
	}
	input := &sagemakerruntime.InvokeEndpointInput{EndpointName: aws.String(endpoint), Body: req.Body,
		ContentType: aws.String(req.ContentType), Accept: aws.String("image/png")}
	if req.CustomAttributes != "" {
		input.CustomAttributes = aws.String(req.CustomAttributes)
	}
	out, err := sagemakerruntime.NewFromConfig(cfg, opts).InvokeEndpoint(context.Background(), input)
	if err != nil {
		var api smithy.APIError
		if errors.As(err, &api) {
			return fmt.Errorf("%s: %s", api.ErrorCode(), api.ErrorMessage())
		}
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, "mask.png"), out.Body, 0o644)
}

func main() {
	endpoint := flag.String("endpoint-name", os.Getenv("SAGEMAKER_ENDPOINT_NAME"), "endpoint name")
	imagePath := flag.String("image", "", "photo (JPEG, PNG or WebP)")
	pointsText := flag.String("points", "", "clicks as \"x,y;x,y\"")
	outDir := flag.String("out", ".", "output folder")
	flag.Parse()
	if err := run(*endpoint, *imagePath, *pointsText, *outDir); err != nil {
		fmt.Fprintln(os.Stderr, "holds-extract:", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
}

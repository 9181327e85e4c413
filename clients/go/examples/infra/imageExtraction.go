// Package infra is the guide's internal/infra/imageExtraction.go, ready to copy into the Go
// backend: an ImageExtractionService that USE_SAGEMAKER switches between the SageMaker endpoint
// and the old direct extraction API.
//
// Copy this file and clients/go/holds into the backend (change the holds import to where the
// package lands), replace Point with domain.Point, and pass the old client as Direct. Settings,
// read once by NewImageExtractionService:
//
//	USE_SAGEMAKER=true                 the endpoint; anything else: the old API (Direct)
//	SAGEMAKER_ENDPOINT_NAME=sam-climbing-endpoint
//	AWS_REGION=eu-west-1               with the usual AWS credential chain
//	AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8080   (optional) a local endpoint
package infra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	holds "../../holds"
)

// Point is the backend's domain.Point: a click in upright photo pixels.
type Point struct{ X, Y float64 }

// ExtractFunc is one way to extract holds: the RGBA cut-out (background at 10% alpha) and the
// 8-bit mask (255 on holds), both PNG at the photo's size.
type ExtractFunc func(ctx context.Context, imageBytes []byte, points []Point) (cutoutPNG, maskPNG []byte, err error)

// ImageExtractionService extracts holds through the endpoint or the old direct API.
type ImageExtractionService struct {
	useSageMaker bool
	sagemaker    *holds.Client
	direct       ExtractFunc
}

// NewImageExtractionService reads USE_SAGEMAKER; with it true the endpoint's client is built
// from SAGEMAKER_ENDPOINT_NAME and AWS_REGION, else direct (the old API) is used.
func NewImageExtractionService(ctx context.Context, direct ExtractFunc) (*ImageExtractionService, error) {
	useSageMaker, _ := strconv.ParseBool(os.Getenv("USE_SAGEMAKER"))
	service := &ImageExtractionService{useSageMaker: useSageMaker, direct: direct}
	if !useSageMaker {
		if direct == nil {
			return nil, errors.New("USE_SAGEMAKER is not true and no direct extraction API was given")
		}
		return service, nil
	}
	client, err := holds.NewFromEnv(ctx)
	if err != nil {
		return nil, fmt.Errorf("USE_SAGEMAKER=true: %w", err)
	}
	service.sagemaker = client
	return service, nil
}

// Extract is the backend's entry point: the cut-out and mask PNGs for the photo and clicks.
func (s *ImageExtractionService) Extract(ctx context.Context, imageBytes []byte, points []Point) ([]byte, []byte, error) {
	if s.useSageMaker {
		return s.extractionViaSageMaker(ctx, imageBytes, points)
	}
	return s.direct(ctx, imageBytes, points)
}

// extractionViaSageMaker is the guide's function. A *holds.ModelError says what went wrong:
// ClientError() (a bad photo or clicks: tell the user), Throttled() (retry later; the SDK has
// already retried), else the endpoint failed.
func (s *ImageExtractionService) extractionViaSageMaker(ctx context.Context, imageBytes []byte, points []Point) ([]byte, []byte, error) {
	clicks := make([]holds.Point, len(points))
	for i, p := range points {
		clicks[i] = holds.Point{X: p.X, Y: p.Y}
	}
	return s.sagemaker.Extraction(ctx, imageBytes, clicks)
}

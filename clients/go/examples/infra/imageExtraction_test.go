package infra

import (
	"context"
	"testing"
)

func TestUseSageMakerSwitchesTheBackend(t *testing.T) {
	direct := func(context.Context, []byte, []Point) ([]byte, []byte, error) {
		return []byte("cut"), []byte("mask"), nil
	}
	t.Setenv("USE_SAGEMAKER", "false")
	service, err := NewImageExtractionService(context.Background(), direct)
	if err != nil {
		t.Fatal(err)
	}
	if cut, mask, err := service.Extract(context.Background(), nil, nil); err != nil || string(cut) != "cut" || string(mask) != "mask" {
		t.Fatalf("the old API: %q %q %v", cut, mask, err)
	}
	t.Setenv("USE_SAGEMAKER", "true")
	t.Setenv("SAGEMAKER_ENDPOINT_NAME", "")
	if _, err := NewImageExtractionService(context.Background(), direct); err == nil {
		t.Fatal("USE_SAGEMAKER=true without SAGEMAKER_ENDPOINT_NAME must be refused")
	}
	t.Setenv("SAGEMAKER_ENDPOINT_NAME", "sam-climbing-endpoint")
	t.Setenv("AWS_REGION", "us-east-1")
	service, err = NewImageExtractionService(context.Background(), nil)
	if err != nil || service.sagemaker == nil || service.sagemaker.EndpointName != "sam-climbing-endpoint" {
		t.Fatalf("%+v, %v", service, err)
	}
}

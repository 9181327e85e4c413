//go:build integration

// Integration tests against real endpoints, run by tests/integration/test_go_client.py (which
// starts our server on the tiny model and the rehearsal's data plane in front of it, and writes
// the Python client's answers to the same requests into HOLDS_IT_DIR): make go-test.

package holds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// fixture is a file the Python side wrote.
func fixture(t *testing.T, name string) []byte {
	data, err := os.ReadFile(filepath.Join(os.Getenv("HOLDS_IT_DIR"), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func fixturePoints(t *testing.T) []Point {
	var pairs [][2]float64
	if err := json.Unmarshal(fixture(t, "points.json"), &pairs); err != nil {
		t.Fatal(err)
	}
	points := make([]Point, len(pairs))
	for i, p := range pairs {
		points[i] = Point{X: p[0], Y: p[1]}
	}
	return points
}

// clientFor is a Client of the endpoint at the URL in the variable urlVar (signed with the test
// credentials the Python side put in the environment).
func clientFor(t *testing.T, urlVar string) *Client {
	url := os.Getenv(urlVar)
	if url == "" || os.Getenv("HOLDS_IT_DIR") == "" {
		t.Skip("run by tests/integration/test_go_client.py (make go-test), which starts the endpoints")
	}
	t.Setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", url)
	client, err := New(context.Background(), "sam-climbing-endpoint")
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func sameBytes(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if !bytes.Equal(got, fixture(t, want)) {
		t.Errorf("%s: %d bytes differ from the Python client's %s", what, len(got), want)
	}
}

func TestIntegrationExtractionEqualsThePythonClient(t *testing.T) {
	for _, urlVar := range []string{"HOLDS_IT_PLANE_URL", "HOLDS_IT_SERVER_URL"} {
		client := clientFor(t, urlVar)
		cutout, mask, err := client.Extraction(context.Background(), fixture(t, "photo.jpg"), fixturePoints(t))
		if err != nil {
			t.Fatalf("%s: %v", urlVar, err)
		}
		sameBytes(t, urlVar+" cut-out", cutout, "cutout.png")
		sameBytes(t, urlVar+" mask", mask, "mask.png")
	}
}

var compact = Outputs{ResultFormat: "webp", MaskFormat: "png1"}

func TestIntegrationFollowUpByImageID(t *testing.T) {
	client, ctx, points := clientFor(t, "HOLDS_IT_PLANE_URL"), context.Background(), fixturePoints(t)
	first, err := client.Extract(ctx, fixture(t, "photo.jpg"), points[:1], Options{Outputs: compact})
	if err != nil || !regexp.MustCompile("^[0-9a-f]{32}$").MatchString(first.ImageID) || first.Variant != "Primary" {
		t.Fatalf("%+v, %v", first, err)
	}
	more, err := client.FollowUp(ctx, first.ImageID, points[1:], Options{Outputs: compact, TargetVariant: first.Variant})
	if err != nil || !more.CacheHit || more.ImageID != first.ImageID {
		t.Fatalf("%+v, %v", more, err)
	}
	sameBytes(t, "first mask", first.MaskImage, "first_mask.png")
	sameBytes(t, "follow-up mask", more.MaskImage, "follow_up_mask.png")
}

func TestIntegrationCompactOutputs(t *testing.T) {
	client, ctx := clientFor(t, "HOLDS_IT_PLANE_URL"), context.Background()
	small := compact
	small.MaxSide = 500
	result, err := client.Extract(ctx, fixture(t, "photo.jpg"), fixturePoints(t), Options{Outputs: small})
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "WebP cut-out", result.ResultImage, "compact_result.webp")
	sameBytes(t, "1-bit mask", result.MaskImage, "compact_mask.png")
	rle, err := client.Extract(ctx, fixture(t, "photo.jpg"), fixturePoints(t),
		Options{Outputs: Outputs{ResultFormat: "none", MaskFormat: "rle"}})
	if err != nil || rle.MaskImage != nil || rle.ResultImage != nil || rle.MaskRLE == nil {
		t.Fatalf("%+v, %v", rle, err)
	}
	var want RLE
	if err := json.Unmarshal(fixture(t, "mask_rle.json"), &want); err != nil || *rle.MaskRLE != want {
		t.Fatalf("RLE %+v, want %+v (%v)", rle.MaskRLE, want, err)
	}
}

func TestIntegrationPhotoWhoseBase64PassesSixMiBGoesRaw(t *testing.T) {
	client, photo, points := clientFor(t, "HOLDS_IT_PLANE_URL"), fixture(t, "raw_photo.jpg"), fixturePoints(t)
	outputs := Outputs{ResultFormat: "none", MaskFormat: "png1"} // the Python client's default mask
	if req, _ := BuildRequest(photo, points, outputs, MaxPayloadBytes); req.ContentType != "image/jpeg" {
		t.Fatalf("a %d-byte photo must go raw, not %q", len(photo), req.ContentType)
	}
	result, err := client.Extract(context.Background(), photo, points, Options{Outputs: outputs})
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "raw photo's mask", result.MaskImage, "raw_mask.png")
}

func TestIntegrationUnknownImageIDIsA404ModelError(t *testing.T) {
	client := clientFor(t, "HOLDS_IT_PLANE_URL")
	_, err := client.FollowUp(context.Background(), "00000000000000000000000000000000", fixturePoints(t), Options{})
	var me *ModelError
	if !errors.As(err, &me) || me.StatusCode != 404 || me.Code != "unknown_image_id" || !me.UnknownImage() ||
		me.FromSageMaker || me.Throttled() {
		t.Fatalf("got %#v", err)
	}
}

func TestIntegrationBodyOverSixMiBIsA413ModelError(t *testing.T) {
	client, photo := clientFor(t, "HOLDS_IT_PLANE_URL"), append(fixture(t, "raw_photo.jpg"), make([]byte, 2<<20)...)
	var me *ModelError
	_, err := client.Extract(context.Background(), photo, fixturePoints(t), Options{})
	if !errors.As(err, &me) || me.StatusCode != 413 || me.FromSageMaker {
		t.Fatalf("refused before sending: got %#v", err)
	}
	client.MaxRequestBytes = 64 << 20 // send it anyway: SageMaker's own 413
	_, err = client.Extract(context.Background(), photo, fixturePoints(t), Options{})
	if !errors.As(err, &me) || me.StatusCode != 413 || !me.FromSageMaker || !me.ClientError() {
		t.Fatalf("SageMaker's answer: got %#v %v", err, err)
	}
}

func TestIntegrationSessionThroughTheMiddleware(t *testing.T) {
	client, ctx, points := clientFor(t, "HOLDS_IT_PLANE_URL"), context.Background(), fixturePoints(t)
	first, err := client.Extract(ctx, fixture(t, "photo.jpg"), points[:1], Options{Outputs: compact, OpenSession: true})
	if err != nil || !regexp.MustCompile("^[0-9a-f]{32}$").MatchString(first.SessionID) {
		t.Fatalf("%+v, %v", first, err)
	}
	more, err := client.FollowUpOf(ctx, first, points[1:], compact)
	if err != nil || !more.CacheHit || more.SessionID != first.SessionID {
		t.Fatalf("%+v, %v", more, err)
	}
	sameBytes(t, "session follow-up mask", more.MaskImage, "follow_up_mask.png")
	if closed, err := client.CloseSession(ctx, first.SessionID, first.Variant); err != nil || closed != first.SessionID {
		t.Fatalf("closed %q, %v", closed, err)
	}
	var me *ModelError
	if _, err := client.FollowUpOf(ctx, first, points[1:], compact); !errors.As(err, &me) || !me.UnknownImage() {
		t.Fatalf("a closed session: got %#v", err)
	}
}

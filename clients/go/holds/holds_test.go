package holds

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestSmallPhotoGoesAsJSON(t *testing.T) {
	image := append([]byte("\xff\xd8\xff"), make([]byte, 100)...)
	req, err := BuildRequest(image, []Point{{X: 1.5, Y: 2}}, MaxPayloadBytes)
	if err != nil || req.ContentType != "application/json" {
		t.Fatalf("got %q, %v", req.ContentType, err)
	}
	var doc struct {
		ImageBase64 string  `json:"image_base64"`
		Points      []Point `json:"points"`
	}
	if err := json.Unmarshal(req.Body, &doc); err != nil || len(doc.Points) != 1 || doc.Points[0].X != 1.5 {
		t.Fatalf("body %s: %v", req.Body, err)
	}
}

func TestLargePhotoGoesRaw(t *testing.T) {
	image := append([]byte("\x89PNG"), make([]byte, 5*1024*1024)...)
	req, err := BuildRequest(image, []Point{{X: 10, Y: 20}, {X: 3.25, Y: 4}}, MaxPayloadBytes)
	if err != nil || req.ContentType != "image/png" || !bytes.Equal(req.Body, image) {
		t.Fatalf("got %q, %v", req.ContentType, err)
	}
	if req.CustomAttributes != "points=10,20;3.25,4" {
		t.Fatalf("attributes %q", req.CustomAttributes)
	}
}

func TestOverLimitIs413(t *testing.T) {
	image := append([]byte("\xff\xd8\xff"), make([]byte, MaxPayloadBytes)...)
	_, err := BuildRequest(image, []Point{{X: 1, Y: 1}}, MaxPayloadBytes)
	var me *ModelError
	if !errors.As(err, &me) || me.StatusCode != 413 {
		t.Fatalf("want 413 ModelError, got %v", err)
	}
}

func TestUnknownImageIDMapsTo404(t *testing.T) {
	me := ParseModelError(404, []byte(`{"error": "unknown_image_id", "message": "expired", "request_id": "r1"}`))
	if me.Code != "unknown_image_id" || me.Message != "expired" || !me.ClientError() || me.Throttled() {
		t.Fatalf("%+v", me)
	}
	if plain := ParseModelError(502, []byte("bad gateway")); plain.Code != "" || plain.Message != "bad gateway" {
		t.Fatalf("%+v", plain)
	}
	if throttled := ParseModelError(429, []byte(`{}`)); !throttled.Throttled() || throttled.ClientError() {
		t.Fatal("429 is throttling")
	}
}

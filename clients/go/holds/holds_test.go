package holds

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestSmallPhotoGoesAsJSON(t *testing.T) {
	image := append([]byte("\xff\xd8\xff"), make([]byte, 100)...)
	req, err := BuildRequest(image, []Point{{X: 1.5, Y: 2}, {X: 3, Y: 4, Background: true}},
		Outputs{ResultFormat: "webp", MaxSide: 512}, MaxPayloadBytes)
	if err != nil || req.ContentType != "application/json" || req.CustomAttributes != "" {
		t.Fatalf("got %q %q, %v", req.ContentType, req.CustomAttributes, err)
	}
	want := `{"image_base64":"/9j/` + "AAAA" + `","outputs":{"max_side":512,"result_format":"webp"},` +
		`"points":[{"label":1,"x":1.5,"y":2},{"label":0,"x":3,"y":4}]}`
	var got, expected any
	_ = json.Unmarshal(req.Body, &got)
	_ = json.Unmarshal([]byte(want), &expected)
	gotPoints, _ := json.Marshal(got.(map[string]any)["points"])
	wantPoints, _ := json.Marshal(expected.(map[string]any)["points"])
	gotOutputs, _ := json.Marshal(got.(map[string]any)["outputs"])
	wantOutputs, _ := json.Marshal(expected.(map[string]any)["outputs"])
	if !bytes.Equal(gotPoints, wantPoints) || !bytes.Equal(gotOutputs, wantOutputs) {
		t.Fatalf("body %s", req.Body)
	}
}

func TestLargePhotoGoesRaw(t *testing.T) {
	image := append([]byte("\x89PNG"), make([]byte, 5*1024*1024)...)
	req, err := BuildRequest(image, []Point{{X: 10, Y: 20}, {X: 3.25, Y: 4, Background: true}},
		Outputs{ResultFormat: "none", MaskFormat: "png1", MaxSide: 2048}, MaxPayloadBytes)
	if err != nil || req.ContentType != "image/png" || !bytes.Equal(req.Body, image) {
		t.Fatalf("got %q, %v", req.ContentType, err)
	}
	if want := "points=10,20;3.25,4&labels=1,0&result_format=none&mask_format=png1&max_side=2048"; req.CustomAttributes != want {
		t.Fatalf("attributes %q, want %q", req.CustomAttributes, want)
	}
}

func TestTheSwitchPointIsTheBase64Size(t *testing.T) {
	// 3*(limit-4096)/4 raw bytes encode to exactly the limit less the JSON room: still JSON; 3 more is raw.
	fits := 3 * (MaxPayloadBytes - jsonOverheadBytes) / 4
	for size, want := range map[int]string{fits: "application/json", fits + 3: "image/jpeg"} {
		image := append([]byte("\xff\xd8\xff"), make([]byte, size-3)...)
		req, err := BuildRequest(image, []Point{{X: 1, Y: 1}}, Outputs{}, MaxPayloadBytes)
		if err != nil || req.ContentType != want {
			t.Fatalf("%d bytes: got %q, %v; want %q", size, req.ContentType, err, want)
		}
	}
}

func TestOverLimitIs413(t *testing.T) {
	image := append([]byte("\xff\xd8\xff"), make([]byte, MaxPayloadBytes)...)
	_, err := BuildRequest(image, []Point{{X: 1, Y: 1}}, Outputs{}, MaxPayloadBytes)
	var me *ModelError
	if !errors.As(err, &me) || me.StatusCode != 413 || !me.ClientError() {
		t.Fatalf("want 413 ModelError, got %v", err)
	}
}

func TestBadPointsAreRefusedBeforeSending(t *testing.T) {
	if _, err := BuildRequest([]byte("\xff\xd8\xff"), nil, Outputs{}, MaxPayloadBytes); err == nil {
		t.Fatal("no points must be refused")
	}
	nan := Point{X: 1, Y: math.NaN()}
	if _, err := BuildFollowUp("abc", []Point{nan}, Outputs{}, false); err == nil {
		t.Fatal("a NaN point must be refused")
	}
}

func TestFollowUpBody(t *testing.T) {
	req, err := BuildFollowUp("0123abcd", []Point{{X: 7, Y: 8}}, Outputs{MaskFormat: "rle"}, false)
	if err != nil || req.ContentType != "application/json" {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.Unmarshal(req.Body, &doc)
	if doc["image_id"] != "0123abcd" || doc["close_session"] != nil || doc["image_base64"] != nil ||
		doc["outputs"].(map[string]any)["mask_format"] != "rle" {
		t.Fatalf("body %s", req.Body)
	}
	closing, _ := BuildFollowUp("", nil, Outputs{}, true)
	if string(closing.Body) != `{"close_session":true,"outputs":{}}` {
		t.Fatalf("close body %s", closing.Body)
	}
}

func TestParseModelError(t *testing.T) {
	me := ParseModelError(404, []byte(`{"error": "unknown_image_id", "message": "expired", "request_id": "r1"}`))
	if me.Code != "unknown_image_id" || me.Message != "expired" || !me.ClientError() || me.Throttled() || !me.UnknownImage() {
		t.Fatalf("%+v", me)
	}
	if plain := ParseModelError(502, []byte("bad gateway")); plain.Code != "" || plain.Message != "bad gateway" {
		t.Fatalf("%+v", plain)
	}
	if throttled := ParseModelError(429, []byte(`{}`)); !throttled.Throttled() || throttled.ClientError() {
		t.Fatal("429 is throttling")
	}
	sdk := &ModelError{StatusCode: 400, Code: "ThrottlingException", FromSageMaker: true}
	if !sdk.Throttled() || sdk.ClientError() {
		t.Fatal("SageMaker's ThrottlingException is throttling")
	}
}

func TestParseResultDecodesImagesAndMetadata(t *testing.T) {
	body := []byte(`{"result_image_base64": "UklGRg==", "mask_image_base64": "iVBORw==", "image_id": "ab12",
		"cache_hit": true, "mask_rle": {"size": [3, 4], "counts": "52"}, "clicks": [{"area": 5}]}`)
	result, err := ParseResult(body, "application/json; charset=utf-8")
	if err != nil || string(result.ResultImage) != "RIFF" || string(result.MaskImage) != "\x89PNG" ||
		result.ImageID != "ab12" || !result.CacheHit || result.MaskRLE.Size != [2]int{3, 4} || result.MaskRLE.Counts != "52" {
		t.Fatalf("%+v, %v", result, err)
	}
	if _, kept := result.Metadata["result_image_base64"]; kept || result.Metadata["clicks"] == nil {
		t.Fatalf("metadata %v", result.Metadata)
	}
	if _, err := ParseResult([]byte(`{"mask_image_base64": "%%%"}`), "application/json"); err == nil {
		t.Fatal("bad base64 must be an error")
	}
	if _, err := ParseResult([]byte("x"), "text/html"); err == nil {
		t.Fatal("an unexpected type must be an error")
	}
}

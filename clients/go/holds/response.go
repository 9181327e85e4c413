package holds

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// RLE is a COCO compressed run-length mask (column-major), as "mask_format": "rle" answers it.
type RLE struct {
	Size   [2]int `json:"size"` // [height, width] in output pixels
	Counts string `json:"counts"`
}

// Result is one answer. ResultImage is the cut-out (PNG or WebP; nil for "none"), MaskImage the
// mask (PNG, 255 or 1 on holds; nil for "rle" or "none"), MaskRLE the mask for "rle". Metadata is
// the JSON answer without its images (image_id, cache_hit, clicks, timings_ms, warnings, ...).
type Result struct {
	ResultImage []byte
	MaskImage   []byte
	MaskRLE     *RLE
	ImageID     string
	CacheHit    bool
	Metadata    map[string]any
	// Variant is the production variant that answered (send follow-ups to it: TargetVariant).
	Variant string
	// SessionID is the stateful session the answer opened or continued ("" for none);
	// ClosedSessionID the one it closed.
	SessionID       string
	ClosedSessionID string
}

// ParseResult decodes the endpoint's answer: JSON (images in base64) or image/png (the mask alone).
func ParseResult(body []byte, contentType string) (*Result, error) {
	media := strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	switch media {
	case "image/png":
		return &Result{MaskImage: body, Metadata: map[string]any{}}, nil
	case "application/json":
		return parseJSONResult(body)
	}
	return nil, fmt.Errorf("unexpected answer type %q", contentType)
}

func parseJSONResult(body []byte) (*Result, error) {
	var doc struct {
		Result   string `json:"result_image_base64"`
		Mask     string `json:"mask_image_base64"`
		MaskRLE  *RLE   `json:"mask_rle"`
		ImageID  string `json:"image_id"`
		CacheHit bool   `json:"cache_hit"`
	}
	metadata := map[string]any{}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("the JSON answer cannot be decoded: %w", err)
	}
	if err := json.Unmarshal(body, &metadata); err != nil {
		return nil, fmt.Errorf("the JSON answer cannot be decoded: %w", err)
	}
	for key := range metadata {
		if strings.HasSuffix(key, "_base64") {
			delete(metadata, key)
		}
	}
	result := &Result{MaskRLE: doc.MaskRLE, ImageID: doc.ImageID, CacheHit: doc.CacheHit, Metadata: metadata}
	var err error
	if result.ResultImage, err = decodeBase64(doc.Result, "result_image_base64"); err != nil {
		return nil, err
	}
	if result.MaskImage, err = decodeBase64(doc.Mask, "mask_image_base64"); err != nil {
		return nil, err
	}
	return result, nil
}

func decodeBase64(text, field string) ([]byte, error) {
	if text == "" {
		return nil, nil
	}
	data, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("the answer's %s is not base64: %w", field, err)
	}
	return data, nil
}

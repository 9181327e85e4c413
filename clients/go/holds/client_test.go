package holds

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// endpoint is a real HTTP server standing in for SageMaker Runtime; answer writes each attempt's reply.
func endpoint(t *testing.T, answer func(attempt int32, w http.ResponseWriter, r *http.Request)) (*Client, *int32) {
	var attempts int32
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(atomic.AddInt32(&attempts, 1), w, r)
	}))
	t.Cleanup(server.Close)
	t.Setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("SAGEMAKER_ENDPOINT_NAME", "holds-test")
	client, err := NewFromEnv(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return client, &attempts
}

const okAnswer = `{"mask_image_base64": "iVBORw==", "image_id": "ab12"}`

func TestContainerErrorThroughSageMakerIsAModelError(t *testing.T) {
	client, attempts := endpoint(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("x-amzn-ErrorType", "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/")
		w.WriteHeader(424)
		_, _ = io.WriteString(w, `{"ErrorCode": "CLIENT_ERROR_FROM_MODEL", "OriginalStatusCode": 404, "Message": "x",
			"OriginalMessage": "{\"error\": \"unknown_image_id\", \"message\": \"no such image\"}"}`)
	})
	_, err := client.FollowUp(context.Background(), "ab12", []Point{{X: 1, Y: 2}}, Options{})
	var me *ModelError
	if !errors.As(err, &me) || me.StatusCode != 404 || me.Code != "unknown_image_id" || !me.UnknownImage() || me.FromSageMaker {
		t.Fatalf("got %#v", err)
	}
	if *attempts != 1 {
		t.Fatalf("a client error is not retried: %d attempts", *attempts)
	}
}

func TestSageMakerErrorsKeepTheirStatus(t *testing.T) {
	client, _ := endpoint(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("x-amzn-ErrorType", "ValidationError")
		w.WriteHeader(400)
		_, _ = io.WriteString(w, `{"message": "Endpoint holds-test of account 123 not found."}`)
	})
	_, err := client.Extract(context.Background(), []byte("\xff\xd8\xff"), []Point{{X: 1, Y: 2}}, Options{})
	var me *ModelError
	if !errors.As(err, &me) || me.StatusCode != 400 || me.Code != "ValidationError" || !me.FromSageMaker ||
		!strings.Contains(me.Message, "not found") {
		t.Fatalf("got %#v", err)
	}
}

func TestThrottlingIsRetriedByTheSDK(t *testing.T) {
	client, attempts := endpoint(t, func(attempt int32, w http.ResponseWriter, _ *http.Request) {
		if attempt == 1 {
			w.Header().Set("x-amzn-ErrorType", "ThrottlingException")
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"message": "slow down"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, okAnswer)
	})
	result, err := client.Extract(context.Background(), []byte("\xff\xd8\xff"), []Point{{X: 1, Y: 2}}, Options{})
	if err != nil || result.ImageID != "ab12" || *attempts != 2 {
		t.Fatalf("%v after %d attempts", err, *attempts)
	}
}

func TestExhaustedRetriesStillGiveAThrottledModelError(t *testing.T) {
	client, attempts := endpoint(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("x-amzn-ErrorType", "ServiceUnavailable")
		w.WriteHeader(503)
		_, _ = io.WriteString(w, `{"message": "busy"}`)
	})
	_, err := client.Extract(context.Background(), []byte("\xff\xd8\xff"), []Point{{X: 1, Y: 2}}, Options{})
	var me *ModelError
	if !errors.As(err, &me) || !me.Throttled() || *attempts != MaxAttempts {
		t.Fatalf("%#v after %d attempts", err, *attempts)
	}
}

func TestSessionHeadersTravelBothWays(t *testing.T) {
	var sent []string
	client, _ := endpoint(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		sent = append(sent, r.Header.Get(SessionHeader)+"|"+r.Header.Get("X-Amzn-Sagemaker-Target-Variant"))
		if !strings.Contains(r.Header.Get("Authorization"), "SignedHeaders=") ||
			!strings.Contains(strings.ToLower(r.Header.Get("Authorization")), "x-amzn-sagemaker-session-id") &&
				r.Header.Get(SessionHeader) != "" {
			t.Errorf("the session header must be signed: %q", r.Header.Get("Authorization"))
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get(SessionHeader) == NewSession {
			w.Header().Set(NewSessionHeader, "s123; Expires=2026-12-03T06:00:00Z")
		}
		if strings.Contains(readAll(r), "close_session") {
			w.Header().Set(ClosedSessionHeader, "s123")
		}
		w.Header().Set("X-Amzn-Invoked-Production-Variant", "Challenger")
		_, _ = io.WriteString(w, okAnswer)
	})
	ctx := context.Background()
	first, err := client.Extract(ctx, []byte("\xff\xd8\xff"), []Point{{X: 1, Y: 2}}, Options{OpenSession: true})
	if err != nil || first.SessionID != "s123" || first.Variant != "Challenger" {
		t.Fatalf("%+v, %v", first, err)
	}
	more, err := client.FollowUpOf(ctx, first, []Point{{X: 3, Y: 4}}, Outputs{})
	if err != nil || more.SessionID != "s123" {
		t.Fatalf("%+v, %v", more, err)
	}
	closed, err := client.CloseSession(ctx, first.SessionID, first.Variant)
	if err != nil || closed != "s123" {
		t.Fatalf("%q, %v", closed, err)
	}
	if want := "NEW_SESSION||s123|Challenger|s123|Challenger"; strings.Join(sent, "|") != want {
		t.Fatalf("sent %q, want %q", strings.Join(sent, "|"), want)
	}
}

func readAll(r *http.Request) string {
	body, _ := io.ReadAll(r.Body)
	return string(body)
}

func TestA413WhoseBodyIsCutOffIsStillA413(t *testing.T) {
	client, _ := endpoint(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		_ = conn.Close()
	})
	_, err := client.Extract(context.Background(), []byte("\xff\xd8\xff"), []Point{{X: 1, Y: 2}}, Options{})
	var me *ModelError
	if !errors.As(err, &me) || me.StatusCode != 413 || !me.FromSageMaker || !me.ClientError() || me.Message == "" {
		t.Fatalf("got %#v", err)
	}
}

func TestAnAnswerOverSixMiBIsSageMakersModelError(t *testing.T) {
	client, _ := endpoint(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("x-amzn-ErrorType", "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/")
		w.WriteHeader(424)
		_, _ = io.WriteString(w, `{"OriginalStatusCode": 0, "OriginalMessage": "", "Message": "Response payload size of 9000000 bytes exceeds the maximum"}`)
	})
	_, err := client.Extract(context.Background(), []byte("\xff\xd8\xff"), []Point{{X: 1, Y: 2}}, Options{})
	var me *ModelError
	if !errors.As(err, &me) || me.StatusCode != 424 || me.Code != "ModelError" || !me.FromSageMaker ||
		!strings.Contains(me.Message, "exceeds the maximum") {
		t.Fatalf("got %#v", err)
	}
}

package holds

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sagemakerruntime"
)

// MaxAttempts is how often a call is tried in all: the SDK's standard retryer (throttling,
// 5xx and connection errors, with jittered backoff), as holds_client's botocore "standard" mode.
const MaxAttempts = 3

// Client invokes one endpoint. Runtime is the SDK client (its retryer, signer, endpoint).
type Client struct {
	Runtime         *sagemakerruntime.Client
	EndpointName    string
	MaxRequestBytes int
}

// Options are a request's optional parts; the zero value asks for the server's default outputs.
type Options struct {
	Outputs Outputs
	// TargetVariant pins the request to a production variant of an A/B endpoint ("" lets
	// SageMaker pick by weight); send follow-ups to the first answer's Variant.
	TargetVariant string
	// OpenSession starts a stateful session with the photo (Result.SessionID names it).
	OpenSession bool
}

// NewFromEnv builds a Client from the guide's variables: SAGEMAKER_ENDPOINT_NAME, AWS_REGION (and
// the SDK's usual credential chain), and AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME for a local endpoint.
func NewFromEnv(ctx context.Context) (*Client, error) {
	return New(ctx, os.Getenv("SAGEMAKER_ENDPOINT_NAME"))
}

// New builds a Client for endpointName with the SDK's default configuration (region and
// credentials from the environment), the standard retryer, and
// AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME honoured (aws-sdk-go-v2 1.17 does not read it itself).
func New(ctx context.Context, endpointName string) (*Client, error) {
	if endpointName == "" {
		return nil, fmt.Errorf("no endpoint name: set SAGEMAKER_ENDPOINT_NAME")
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = MaxAttempts })
	}))
	if err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("no AWS region: set AWS_REGION")
	}
	runtime := sagemakerruntime.NewFromConfig(cfg, func(o *sagemakerruntime.Options) {
		if url := os.Getenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"); url != "" {
			o.EndpointResolver = sagemakerruntime.EndpointResolverFromURL(url)
		}
	})
	return &Client{Runtime: runtime, EndpointName: endpointName, MaxRequestBytes: MaxPayloadBytes}, nil
}

// Extraction is the guide's call: the RGBA cut-out (background at 10% alpha) and the 8-bit mask
// (255 on holds) as PNGs at the photo's size. Errors are *ModelError when the endpoint answered.
func (c *Client) Extraction(ctx context.Context, image []byte, points []Point) (cutoutPNG, maskPNG []byte, err error) {
	result, err := c.Extract(ctx, image, points, Options{Outputs: Outputs{ResultFormat: "png", MaskFormat: "png"}})
	if err != nil {
		return nil, nil, err
	}
	return result.ResultImage, result.MaskImage, nil
}

// Extract sends the photo and its clicks (JSON or raw as BuildRequest decides).
func (c *Client) Extract(ctx context.Context, image []byte, points []Point, opts Options) (*Result, error) {
	req, err := BuildRequest(image, points, opts.Outputs, c.MaxRequestBytes)
	if err != nil {
		return nil, err
	}
	session := ""
	if opts.OpenSession {
		session = NewSession
	}
	return c.invoke(ctx, req, opts.TargetVariant, session)
}

// FollowUp sends more clicks on a photo sent before, by its image_id (no upload, no encoder run).
// A 404 *ModelError (UnknownImage) means the embedding expired: Extract the photo again.
func (c *Client) FollowUp(ctx context.Context, imageID string, points []Point, opts Options) (*Result, error) {
	if imageID == "" {
		return nil, fmt.Errorf("a follow-up needs the first answer's image_id")
	}
	req, err := BuildFollowUp(imageID, points, opts.Outputs, false)
	if err != nil {
		return nil, err
	}
	return c.invoke(ctx, req, opts.TargetVariant, "")
}

// FollowUpOf sends more clicks on the photo of first: through its session when it opened one,
// else by its image_id, always to the variant that answered first.
func (c *Client) FollowUpOf(ctx context.Context, first *Result, points []Point, outputs Outputs) (*Result, error) {
	if first.SessionID == "" {
		return c.FollowUp(ctx, first.ImageID, points, Options{Outputs: outputs, TargetVariant: first.Variant})
	}
	req, err := BuildFollowUp("", points, outputs, false)
	if err != nil {
		return nil, err
	}
	return c.invoke(ctx, req, first.Variant, first.SessionID)
}

// CloseSession ends a session (its embedding is freed); it returns the id the endpoint closed.
func (c *Client) CloseSession(ctx context.Context, sessionID, targetVariant string) (string, error) {
	req, err := BuildFollowUp("", nil, Outputs{}, true)
	if err != nil {
		return "", err
	}
	result, err := c.invoke(ctx, req, targetVariant, sessionID)
	if err != nil {
		return "", err
	}
	return result.ClosedSessionID, nil
}

func (c *Client) invoke(ctx context.Context, req Request, targetVariant, session string) (*Result, error) {
	if len(req.Body) > c.MaxRequestBytes {
		return nil, &ModelError{StatusCode: 413, Code: "payload_too_large", Message: fmt.Sprintf(
			"the request body would be %d bytes, over SageMaker's real-time limit of %d bytes", len(req.Body), c.MaxRequestBytes)}
	}
	input := &sagemakerruntime.InvokeEndpointInput{EndpointName: aws.String(c.EndpointName), Body: req.Body,
		ContentType: aws.String(req.ContentType), Accept: aws.String("application/json")}
	if req.CustomAttributes != "" {
		input.CustomAttributes = aws.String(req.CustomAttributes)
	}
	if targetVariant != "" {
		input.TargetVariant = aws.String(targetVariant)
	}
	var errorBody []byte
	out, err := c.Runtime.InvokeEndpoint(ctx, input, withSession(session), withErrorBody(&errorBody))
	if err != nil {
		return nil, fromSDK(err, errorBody)
	}
	result, err := ParseResult(out.Body, aws.ToString(out.ContentType))
	if err != nil {
		return nil, err
	}
	result.Variant = aws.ToString(out.InvokedProductionVariant)
	result.SessionID, result.ClosedSessionID = sessionOf(out.ResultMetadata, session)
	return result, nil
}

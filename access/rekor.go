package access

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/tlog"
)

// CosignRekorBundleAnnotation carries the transparency log's promise of
// inclusion of a keyless cosign signature (a signed entry timestamp).
const CosignRekorBundleAnnotation = "dev.sigstore.cosign/bundle"

// rekorBundle is the annotation's document.
type rekorBundle struct {
	SignedEntryTimestamp string `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

// rekorEntry turns a cosign signature's Rekor bundle into the
// transparency log entry sigstore-go verifies: the entry's body must be
// this signature, its signed entry timestamp by a log of the trusted root,
// and its integrated time is when the certificate must have been valid.
func rekorEntry(raw []byte) (*tlog.Entry, error) {
	var b rekorBundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("the transparency log bundle is not JSON: %w", err)
	}
	body, err := base64.StdEncoding.DecodeString(b.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("the transparency log entry body is not base64: %w", err)
	}
	set, err := base64.StdEncoding.DecodeString(b.SignedEntryTimestamp)
	if err != nil {
		return nil, fmt.Errorf("the signed entry timestamp is not base64: %w", err)
	}
	logID, err := hex.DecodeString(b.Payload.LogID)
	if err != nil {
		return nil, fmt.Errorf("the log ID is not hex: %w", err)
	}
	var kind struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &kind); err != nil {
		return nil, fmt.Errorf("the transparency log entry body is not JSON: %w", err)
	}
	e, err := tlog.ParseTransparencyLogEntry(&protorekor.TransparencyLogEntry{
		LogIndex:          b.Payload.LogIndex,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: kind.Kind, Version: kind.APIVersion},
		IntegratedTime:    b.Payload.IntegratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: set},
		CanonicalizedBody: body,
	})
	if err != nil {
		return nil, fmt.Errorf("the transparency log entry: %w", err)
	}
	return e, nil
}

package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// DefaultTerminationLog is where the kubelet reads a container's termination
// message.
const DefaultTerminationLog = "/dev/termination-log"

// maxTerminationMessage is the kubelet's limit; longer messages are cut,
// which would leave the controller with invalid JSON.
const maxTerminationMessage = 4096

// terminationMessage encodes result so that it fits the kubelet's limit.
// Lists are shortened first, then the error text; counts are never touched,
// so the controller always sees exact numbers.
func terminationMessage(result any) ([]byte, error) {
	b, err := json.Marshal(result)
	if err != nil || len(b) <= maxTerminationMessage {
		return b, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, key := range []string{"changedFileList", "removed"} {
		for {
			list, ok := m[key].([]any)
			if !ok || len(list) == 0 {
				break
			}
			m[key] = list[:len(list)/2]
			m[key+"Truncated"] = true
			if b, err = json.Marshal(m); err != nil || len(b) <= maxTerminationMessage {
				return b, err
			}
		}
	}
	// Hooks: their output tails first, then their messages, which the error repeats anyway.
	if hooks, ok := m["hooks"].([]any); ok {
		for _, field := range []string{"outputTail", "message"} {
			for _, h := range hooks {
				if hm, ok := h.(map[string]any); ok {
					delete(hm, field)
				}
			}
			if b, err = json.Marshal(m); err != nil || len(b) <= maxTerminationMessage {
				return b, err
			}
		}
	}
	if msg, ok := m["error"].(string); ok {
		excess := len(b) - maxTerminationMessage + len("…") + 16
		if excess < len(msg) {
			m["error"] = msg[:len(msg)-excess] + "…"
		} else {
			m["error"] = "error message too long for the termination message; see the container log"
		}
		if b, err = json.Marshal(m); err != nil || len(b) <= maxTerminationMessage {
			return b, err
		}
	}
	// Only paths can still be long: keep the fields the controller acts on.
	slim := map[string]any{}
	for _, k := range []string{"operation", "error", "reason", "sha256", "size", "sourceBytes", "files", "bytes", "compression", "changedFiles", "startTime", "completionTime", "durationSeconds", "toolVersion", "hooks"} {
		if v, ok := m[k]; ok {
			slim[k] = v
		}
	}
	slim["truncated"] = true
	return json.Marshal(slim)
}

// writeTerminationLog stores the result where the kubelet picks it up. The
// default path is only written when it already exists, as it does in a
// container, so running the agent by hand on a host never litters /dev; an
// explicit path is created if its directory exists. Failures are returned
// for a warning and never fail the command.
func writeTerminationLog(path string, explicit bool, msg []byte) error {
	if path == "" {
		return nil
	}
	if !explicit {
		if _, err := os.Stat(path); err != nil {
			return nil
		}
	} else if di, err := os.Stat(filepath.Dir(path)); err != nil || !di.IsDir() {
		return err
	}
	return os.WriteFile(path, msg, 0o644)
}

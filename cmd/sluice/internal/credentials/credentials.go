// Package credentials is where the sluice CLI keeps the tokens it logs in
// with: one file in the user's configuration directory
// ($XDG_CONFIG_HOME/sluice/credentials.json, else
// ~/.config/sluice/credentials.json), readable by its owner only, mapping
// each server URL to a token. `sluice login` writes it, and so does
// `sluice up` for the admin token it makes on first start.
package credentials

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File is the credentials file's form.
type File struct {
	// Servers maps a server URL (without a trailing slash) to a token.
	Servers map[string]string `json:"servers"`
}

// maxFileSize bounds what Load reads.
const maxFileSize = 1 << 20

// Path is the credentials file for an environment read through getenv.
func Path(getenv func(string) string) (string, error) {
	if dir := getenv("XDG_CONFIG_HOME"); dir != "" && filepath.IsAbs(dir) {
		return filepath.Join(dir, "sluice", "credentials.json"), nil
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".config", "sluice", "credentials.json"), nil
	}
	return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set, so there is no place for credentials")
}

// Key is how a server URL is written in the file.
func Key(server string) string { return strings.TrimRight(server, "/") }

// Load reads the file at path; a missing file is an empty one.
func Load(path string) (File, error) {
	f := File{Servers: map[string]string{}}
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	if info.Size() > maxFileSize {
		return f, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	if f.Servers == nil {
		f.Servers = map[string]string{}
	}
	return f, nil
}

// Token is the token saved for server, "" when none.
func Token(path, server string) (string, error) {
	f, err := Load(path)
	if err != nil {
		return "", err
	}
	return f.Servers[Key(server)], nil
}

// Save sets (or, with token "", removes) server's token in the file at
// path, writing it readable by its owner only.
func Save(path, server, token string) error {
	f, err := Load(path)
	if err != nil {
		return err
	}
	if token == "" {
		delete(f.Servers, Key(server))
	} else {
		f.Servers[Key(server)] = token
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	_, werr := tmp.Write(append(data, '\n'))
	if err := errors.Join(werr, tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

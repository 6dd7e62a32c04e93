package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
)

func (s *session) artifactsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "artifacts <run-id>",
		Short:             "List the artifacts of a run's build",
		Example:           `  $ sluice artifacts 01a241d7-6533-7754-8392-2fcf9d8b3f73`,
		Args:              needArgs("<run-id>"),
		ValidArgsFunction: s.completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := s.build().GetBuild(cmd.Context(), &buildv1.GetBuildRequest{RunId: args[0]})
			return s.render(res, err, func() error {
				t := &table{}
				t.add("NAME", "FORMAT", "SIZE", "SHA256")
				for _, a := range res.GetBuild().GetArtifacts() {
					t.add(sanitizeLine(a.GetName()), formatName(a.GetFormat()), strconv.FormatInt(a.GetSize(), 10), sanitizeLine(a.GetSha256()))
				}
				return t.write(s.app.Stdout)
			})
		},
	}
	return withFields(cmd, "run_id", "<run-id>")
}

func (s *session) artifactCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "artifact",
		Short:   "Download an artifact of a run's build",
		Example: `  $ sluice artifact get 01a241d7-6533-7754-8392-2fcf9d8b3f73 hello -o bin/hello`,
	}
	cmd.AddCommand(s.artifactGetCmd())
	return cmd
}

func (s *session) artifactGetCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get <run-id> <name> [-o PATH]",
		Short: "Download an artifact of a run's build, its digest checked",
		Long: `Download one artifact of a run's build to PATH (default: ./<name>, or
./<name>.tar.gz for an artifact that is a directory or a glob, which the
build keeps as a gzipped tar: unpack it with tar -xzf). The content is
checked against the size and sha256 the build recorded, by the build
service as it reads it and again here; PATH is written only once it
matched (a file there is replaced).`,
		Example: `  $ sluice artifact get 01a241d7-6533-7754-8392-2fcf9d8b3f73 hello -o bin/hello`,
		Args:    needArgs("<run-id>", "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			stream, err := s.build().GetArtifactContent(cmd.Context(), &buildv1.GetArtifactContentRequest{RunId: args[0], Name: args[1]})
			if err != nil {
				return err
			}
			defer func() { _ = stream.Close() }()
			a, path, err := writeArtifact(stream, out, args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(s.app.Stdout, "wrote %s: %d bytes (%s), sha256 %s\n", sanitizeLine(path), a.GetSize(), formatName(a.GetFormat()), sanitizeLine(a.GetSha256()))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the file to write (default: ./<name>, or ./<name>.tar.gz for a directory or a glob)")
	return withFields(cmd, "run_id", "<run-id>", "name", "<name>")
}

// formatName is an artifact's format for people.
func formatName(f buildv1.ArtifactFormat) string {
	if f == buildv1.ArtifactFormat_ARTIFACT_FORMAT_TAR_GZIP {
		return "tar.gz"
	}
	return "file"
}

// writeArtifact writes what stream sends to a temporary file beside path,
// checks its size and sha256 against the artifact's record (the stream's
// first message), and renames it to path (when "", name, and .tar.gz for a
// gzipped tar). It returns the record and the path.
func writeArtifact(stream *connect.ServerStreamForClient[buildv1.GetArtifactContentResponse], path, name string) (a *buildv1.Artifact, _ string, err error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, "", err
		}
		return nil, "", errors.New("the build service sent no artifact")
	}
	a = stream.Msg().GetArtifact()
	if a == nil {
		return nil, "", errors.New("the build service did not name the artifact first")
	}
	archive := a.GetFormat() == buildv1.ArtifactFormat_ARTIFACT_FORMAT_TAR_GZIP
	if path == "" {
		path = name
		if archive {
			path += ".tar.gz"
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	var n int64
	for stream.Receive() {
		chunk := stream.Msg().GetChunk()
		if n += int64(len(chunk)); n > a.GetSize() {
			return nil, "", fmt.Errorf("artifact %q: more than the %d bytes the build recorded came", a.GetName(), a.GetSize())
		}
		h.Write(chunk)
		if _, err := f.Write(chunk); err != nil {
			return nil, "", err
		}
	}
	if err := stream.Err(); err != nil {
		return nil, "", err
	}
	switch got := hex.EncodeToString(h.Sum(nil)); {
	case n != a.GetSize():
		return nil, "", fmt.Errorf("artifact %q: %d bytes came, the build recorded %d", a.GetName(), n, a.GetSize())
	case got != a.GetSha256():
		return nil, "", fmt.Errorf("artifact %q: sha256 is %s, the build recorded %s", a.GetName(), got, a.GetSha256())
	}
	mode := os.FileMode(0o755) // a program, usually
	if archive {
		mode = 0o644
	}
	if err := f.Chmod(mode); err != nil {
		return nil, "", err
	}
	if err := f.Close(); err != nil {
		return nil, "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, "", err
	}
	return a, path, nil
}

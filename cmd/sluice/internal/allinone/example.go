package allinone

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// PrepareExample copies the example folder src into dst and makes it a git
// repository with one commit, once: when dst is already a repository it is
// left as it is (its history is the user's to extend).
func PrepareExample(src, dst string) error {
	if _, err := git.PlainOpen(dst); err == nil {
		return nil
	}
	info, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("example %s: %w", src, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("example %s: not a directory", src)
	}
	if err := copyTree(src, dst); err != nil {
		return fmt.Errorf("copy example: %w", err)
	}
	repo, err := git.PlainInitWithOptions(dst, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"},
	})
	if err != nil {
		return fmt.Errorf("git init %s: %w", dst, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return fmt.Errorf("git add: %w", err)
	}
	_, err = wt.Commit("feat: hello service\n\nThe bundled example, registered by `sluice up`.", &git.CommitOptions{
		Author: &object.Signature{Name: "Sluice", Email: "sluice@localhost", When: time.Now()},
	})
	if err != nil {
		return fmt.Errorf("git commit: %w", err)
	}
	return nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || d.Name() == "reports" || d.Name() == ".git") && rel != "." {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		if !d.Type().IsRegular() {
			return errors.New(path + ": not a regular file")
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
}

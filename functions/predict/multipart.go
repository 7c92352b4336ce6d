package predict

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
)

// multipart classifies every file of a multipart/form-data body.
func (s *Server) multipart(w http.ResponseWriter, r *http.Request, c *onnxrt.Classifier, boundary string, k int, rl *requestLog) {
	if boundary == "" {
		rl.errKind = KindBadRequest
		writeError(w, http.StatusBadRequest, KindBadRequest, "multipart/form-data without a boundary")
		return
	}
	srcs, results, err := s.readParts(multipart.NewReader(r.Body, boundary))
	var tooMany tooManyFiles
	switch {
	case errors.As(err, &tooMany):
		rl.errKind = KindBadRequest
		writeError(w, http.StatusBadRequest, KindBadRequest, err.Error())
		return
	case err != nil:
		s.bodyError(w, r, err, rl)
		return
	case len(srcs) == 0:
		rl.errKind = KindBadRequest
		writeError(w, http.StatusBadRequest, KindBadRequest, "no files in the multipart request")
		return
	}
	s.classifyInto(r.Context(), c, k, srcs, results, rl)
	writeJSON(w, http.StatusOK, BatchResponse{Model: modelOf(c), Results: results})
}

// tooManyFiles: a multipart body with more than Config.MaxObjects files.
type tooManyFiles int

func (n tooManyFiles) Error() string { return fmt.Sprintf("more than %d files in one request", int(n)) }

// readParts reads the files of a multipart body, one source each in
// request order; plain form fields are skipped. Errors are the body's.
func (s *Server) readParts(mr *multipart.Reader) ([]Source, []Result, error) {
	var (
		srcs    []Source
		results []Result
	)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return srcs, results, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if p.FileName() == "" && p.FormName() != "file" && p.FormName() != "files" {
			// A plain form field: not an image.
			if _, err := io.Copy(io.Discard, p); err != nil {
				return nil, nil, err
			}
			continue
		}
		if len(srcs) == s.Config.MaxObjects {
			return nil, nil, tooManyFiles(s.Config.MaxObjects)
		}
		name := p.FileName()
		if name == "" {
			name = p.FormName()
		}
		src, err := readPart(p, s.Config.MaxImageBytes)
		if err != nil {
			return nil, nil, err
		}
		srcs = append(srcs, src)
		results = append(results, Result{Filename: name})
	}
}

// readPart reads one file; one over maxImage bytes is drained and becomes
// a too_large source.
func readPart(p *multipart.Part, maxImage int64) (Source, error) {
	data, err := io.ReadAll(io.LimitReader(p, maxImage+1))
	if err != nil {
		return Source{}, err
	}
	if int64(len(data)) > maxImage {
		if _, err := io.Copy(io.Discard, p); err != nil {
			return Source{}, err
		}
		return Source{Err: fmt.Errorf("file is over the %d-byte limit: %w", maxImage, blob.ErrTooLarge)}, nil
	}
	return Source{Data: data}, nil
}

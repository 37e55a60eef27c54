// Command interop is the Go half of Calybris's interoperability check
// (`cargo xtask interop`). It reads what `interop generate` wrote (see
// interop/README.md), verifies it with golang.org/x/mod/sumdb/note and
// golang.org/x/mod/sumdb/tlog, checks that every single-byte change of every
// note and proof is rejected, then signs notes and makes proofs of its own for
// the Rust half to verify. It builds in GOPATH mode with no network:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o interop-go ./interop/go
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	origin      = "interop.calybris.example/log"
	tileHeight  = 8
	minLeaves   = 100000
	minProofs   = 1000
	cosigV1     = 0x04
	goKeyName   = "go.interop.calybris.example"
	cosigHeader = "cosignature/v1"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: interop-go SEED DIR")
		os.Exit(2)
	}
	useed, err := strconv.ParseUint(os.Args[1], 0, 64)
	if err != nil {
		fail(fmt.Errorf("seed: %v", err))
	}
	seed := int64(useed)
	summary, err := run(seed, os.Args[2])
	if err != nil {
		fail(err)
	}
	fmt.Printf("interop (go, seed %#x): %s\n", seed, summary)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "interop (go): FAILED: %v\n", err)
	os.Exit(1)
}

// A checkpoint body parsed by hand: tlog.ParseTree only accepts the checksum
// database's origin line.
type checkpoint struct {
	origin string
	tree   tlog.Tree
}

// parseCheckpoint parses a C2SP tlog-checkpoint body strictly: an origin line,
// a canonical decimal size, a canonical base64 root, optional non-empty
// extension lines, and a final newline.
func parseCheckpoint(text string) (checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return checkpoint{}, errors.New("no final newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 || lines[0] == "" {
		return checkpoint{}, errors.New("fewer than three lines")
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return checkpoint{}, errors.New("empty extension line")
		}
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return checkpoint{}, errors.New("size is not canonical decimal")
	}
	root, err := decodeStrict(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return checkpoint{}, errors.New("root is not canonical base64 of 32 bytes")
	}
	var h tlog.Hash
	copy(h[:], root)
	return checkpoint{origin: lines[0], tree: tlog.Tree{N: n, Hash: h}}, nil
}

// decodeStrict decodes base64 that must be in its one canonical form.
func decodeStrict(s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("non-canonical base64")
	}
	return b, nil
}

// cosigner is a witness's tlog-cosignature/v1 key, which this version of
// sumdb/note does not know: its key string is parsed and its signatures
// checked by hand.
type cosigner struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func parseCosigner(vkey string) (cosigner, error) {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return cosigner{}, errors.New("witness key: three fields")
	}
	id, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return cosigner{}, err
	}
	raw, err := decodeStrict(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != cosigV1 {
		return cosigner{}, errors.New("witness key: not a cosignature/v1 Ed25519 key")
	}
	sum := sha256.Sum256(append([]byte(parts[0]+"\n"), raw...))
	if binary.BigEndian.Uint32(sum[:4]) != uint32(id) {
		return cosigner{}, errors.New("witness key: key id mismatch")
	}
	return cosigner{name: parts[0], hash: uint32(id), key: ed25519.PublicKey(raw[1:])}, nil
}

// verifyCosig checks that exactly one cosignature line by c signs text.
func (c cosigner) verifyCosig(text string, sigs []note.Signature) error {
	found := 0
	for _, s := range sigs {
		if s.Name != c.name || s.Hash != c.hash {
			continue
		}
		raw, err := decodeStrict(s.Base64)
		if err != nil || len(raw) != 4+8+ed25519.SignatureSize {
			return errors.New("malformed cosignature")
		}
		ts := binary.BigEndian.Uint64(raw[4:12])
		msg := fmt.Sprintf("%s\ntime %d\n%s", cosigHeader, ts, text)
		if !ed25519.Verify(c.key, []byte(msg), raw[12:]) {
			return errors.New("cosignature does not verify")
		}
		found++
	}
	if found != 1 {
		return fmt.Errorf("%d cosignatures by the witness", found)
	}
	return nil
}

// openStrict opens a signed note with sumdb/note, requires every signature line
// to be canonical base64 (note.Open accepts non-zero padding bits), and, when
// w is given, a valid witness cosignature. It returns the parsed checkpoint.
func openStrict(msg []byte, v note.Verifier, w *cosigner) (checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return checkpoint{}, err
	}
	for _, s := range append(append([]note.Signature{}, n.Sigs...), n.UnverifiedSigs...) {
		if _, err := decodeStrict(s.Base64); err != nil {
			return checkpoint{}, fmt.Errorf("signature of %s: %v", s.Name, err)
		}
	}
	if w != nil {
		if err := w.verifyCosig(n.Text, n.UnverifiedSigs); err != nil {
			return checkpoint{}, err
		}
	}
	return parseCheckpoint(n.Text)
}

// tileReader reads C2SP tiles (tile/<L>/<N>[.p/<W>], no height in the path)
// below a directory.
type tileReader struct{ dir string }

func (r tileReader) Height() int { return tileHeight }

func tilePath(t tlog.Tile) string {
	n := t.N
	var groups []string
	for {
		groups = append([]string{fmt.Sprintf("%03d", n%1000)}, groups...)
		n /= 1000
		if n == 0 {
			break
		}
	}
	for i := 0; i < len(groups)-1; i++ {
		groups[i] = "x" + groups[i]
	}
	p := fmt.Sprintf("tile/%d/%s", t.L, strings.Join(groups, "/"))
	if t.W < 1<<t.H {
		p += fmt.Sprintf(".p/%d", t.W)
	}
	return p
}

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := os.ReadFile(filepath.Join(r.dir, tilePath(t)))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

type proofLine struct {
	a, b   int64
	roots  []tlog.Hash
	hashes []tlog.Hash
}

func parseLines(path string, roots int) ([]proofLine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []proofLine
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f := strings.Split(line, " ")
		if len(f) < 2+roots {
			return nil, fmt.Errorf("short line %q", line)
		}
		a, err1 := strconv.ParseInt(f[0], 10, 64)
		b, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad numbers in %q", line)
		}
		var hs []tlog.Hash
		for _, x := range f[2:] {
			raw, err := hex.DecodeString(x)
			if err != nil || len(raw) != tlog.HashSize {
				return nil, fmt.Errorf("bad hash %q", x)
			}
			var h tlog.Hash
			copy(h[:], raw)
			hs = append(hs, h)
		}
		out = append(out, proofLine{a: a, b: b, roots: hs[:roots], hashes: hs[roots:]})
	}
	return out, nil
}

func formatLine(a, b int64, hashes ...[]tlog.Hash) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d %d", a, b)
	for _, hs := range hashes {
		for _, h := range hs {
			sb.WriteString(" " + hex.EncodeToString(h[:]))
		}
	}
	sb.WriteString("\n")
	return sb.String()
}

// mutate changes every byte of b once by a random non-zero XOR (and by every
// single-bit flip when allBits) and requires accepts to refuse each change.
func mutate(b []byte, rng *rand.Rand, allBits bool, what string, accepts func([]byte) bool) (int, error) {
	tried := 0
	c := append([]byte{}, b...)
	for i := range b {
		masks := []byte{byte(1 + rng.Intn(255))}
		if allBits {
			for bit := 0; bit < 8; bit++ {
				masks = append(masks, 1<<bit)
			}
		}
		for _, m := range masks {
			c[i] = b[i] ^ m
			tried++
			if accepts(c) {
				return tried, fmt.Errorf("%s: byte %d changed by xor %#02x is accepted", what, i, m)
			}
		}
		c[i] = b[i]
	}
	return tried, nil
}

func flatten(hs []tlog.Hash) []byte {
	var b []byte
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

func unflatten(b []byte) []tlog.Hash {
	hs := make([]tlog.Hash, len(b)/tlog.HashSize)
	for i := range hs {
		copy(hs[i][:], b[i*tlog.HashSize:])
	}
	return hs
}

func equalHashes(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func run(seed int64, dir string) (string, error) {
	rng := rand.New(rand.NewSource(seed))
	leaves, err := os.ReadFile(filepath.Join(dir, "leaves.bin"))
	if err != nil {
		return "", err
	}
	size := int64(len(leaves) / tlog.HashSize)
	if size < minLeaves {
		return "", fmt.Errorf("%d leaves, want at least %d", size, minLeaves)
	}
	record := func(n int64) tlog.Hash {
		return tlog.RecordHash(leaves[n*tlog.HashSize : (n+1)*tlog.HashSize])
	}
	vkey, err := os.ReadFile(filepath.Join(dir, "log.vkey"))
	if err != nil {
		return "", err
	}
	logKey, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		return "", fmt.Errorf("our log key: %v", err)
	}
	wkey, err := os.ReadFile(filepath.Join(dir, "witness.vkey"))
	if err != nil {
		return "", err
	}
	witness, err := parseCosigner(string(wkey))
	if err != nil {
		return "", err
	}

	// Our signed checkpoints: note.Open verifies each, the tiles authenticate
	// against each tree head, and every byte change is refused.
	entries, err := os.ReadDir(filepath.Join(dir, "checkpoints"))
	if err != nil {
		return "", err
	}
	tried, openAccepts := 0, 0
	var final checkpoint
	var heads []checkpoint
	for _, e := range entries {
		msg, err := os.ReadFile(filepath.Join(dir, "checkpoints", e.Name()))
		if err != nil {
			return "", err
		}
		var w *cosigner
		n, err := note.Open(msg, note.VerifierList(logKey))
		if err != nil {
			return "", fmt.Errorf("checkpoint %s: note.Open: %v", e.Name(), err)
		}
		if len(n.UnverifiedSigs) > 0 {
			w = &witness
		}
		cp, err := openStrict(msg, logKey, w)
		if err != nil {
			return "", fmt.Errorf("checkpoint %s: %v", e.Name(), err)
		}
		if cp.origin != origin {
			return "", fmt.Errorf("checkpoint %s: origin %q", e.Name(), cp.origin)
		}
		thr := tlog.TileHashReader(cp.tree, tileReader{dir})
		root, err := tlog.TreeHash(cp.tree.N, thr)
		if err != nil || root != cp.tree.Hash {
			return "", fmt.Errorf("checkpoint %s: the tiles do not give its root: %v", e.Name(), err)
		}
		k, err := mutate(msg, rng, w != nil, "checkpoint "+e.Name(), func(m []byte) bool {
			if _, err := note.Open(m, note.VerifierList(logKey)); err == nil {
				openAccepts++
			}
			_, err := openStrict(m, logKey, w)
			return err == nil
		})
		tried += k
		if err != nil {
			return "", err
		}
		heads = append(heads, cp)
		if cp.tree.N > final.tree.N {
			final = cp
		}
	}
	if final.tree.N != size {
		return "", fmt.Errorf("no checkpoint for the whole log of %d leaves", size)
	}
	sort.Slice(heads, func(i, j int) bool { return heads[i].tree.N < heads[j].tree.N })
	// A tile changed on disk is caught by TileHashReader.
	thr := tlog.TileHashReader(final.tree, tileReader{dir})

	// Our inclusion proofs.
	incl, err := parseLines(filepath.Join(dir, "inclusion.txt"), 1)
	if err != nil {
		return "", err
	}
	if len(incl) < minProofs {
		return "", fmt.Errorf("%d inclusion proofs, want %d", len(incl), minProofs)
	}
	var goIncl strings.Builder
	for _, p := range incl {
		t, n, th := p.a, p.b, p.roots[0]
		root, err := tlog.TreeHash(t, thr)
		if err != nil || root != th {
			return "", fmt.Errorf("root of size %d: %v", t, err)
		}
		h := record(n)
		if err := tlog.CheckRecord(tlog.RecordProof(p.hashes), t, th, n, h); err != nil {
			return "", fmt.Errorf("our inclusion proof of %d in %d: %v", n, t, err)
		}
		k, err := mutate(flatten(p.hashes), rng, false, "inclusion proof", func(m []byte) bool {
			return tlog.CheckRecord(tlog.RecordProof(unflatten(m)), t, th, n, h) == nil
		})
		tried += k
		if err != nil {
			return "", err
		}
		if len(p.hashes) > 0 && tlog.CheckRecord(tlog.RecordProof(p.hashes[1:]), t, th, n, h) == nil {
			return "", errors.New("a truncated inclusion proof is accepted")
		}
		mine, err := tlog.ProveRecord(t, n, thr)
		if err != nil {
			return "", err
		}
		if !equalHashes(mine, p.hashes) {
			return "", fmt.Errorf("tlog.ProveRecord(%d, %d) differs from our proof", t, n)
		}
		goIncl.WriteString(formatLine(t, n, []tlog.Hash{root}, mine))
	}

	// Our consistency proofs.
	cons, err := parseLines(filepath.Join(dir, "consistency.txt"), 2)
	if err != nil {
		return "", err
	}
	if len(cons) < minProofs {
		return "", fmt.Errorf("%d consistency proofs, want %d", len(cons), minProofs)
	}
	var goCons strings.Builder
	for _, p := range cons {
		n, t, h, th := p.a, p.b, p.roots[0], p.roots[1]
		r1, err1 := tlog.TreeHash(n, thr)
		r2, err2 := tlog.TreeHash(t, thr)
		if err1 != nil || err2 != nil || r1 != h || r2 != th {
			return "", fmt.Errorf("roots of sizes %d, %d are not the tiles'", n, t)
		}
		if err := tlog.CheckTree(tlog.TreeProof(p.hashes), t, th, n, h); err != nil {
			return "", fmt.Errorf("our consistency proof %d -> %d: %v", n, t, err)
		}
		k, err := mutate(flatten(p.hashes), rng, false, "consistency proof", func(m []byte) bool {
			return tlog.CheckTree(tlog.TreeProof(unflatten(m)), t, th, n, h) == nil
		})
		tried += k
		if err != nil {
			return "", err
		}
		mine, err := tlog.ProveTree(t, n, thr)
		if err != nil {
			return "", err
		}
		if !equalHashes(mine, p.hashes) {
			return "", fmt.Errorf("tlog.ProveTree(%d, %d) differs from our proof", t, n)
		}
		goCons.WriteString(formatLine(n, t, []tlog.Hash{h, th}, mine))
	}

	// Notes signed here, over our tree heads, for the Rust half to verify.
	keySeed := make([]byte, ed25519.SeedSize)
	rng.Read(keySeed)
	skey, gvkey, err := note.GenerateKey(bytes.NewReader(keySeed), goKeyName)
	if err != nil {
		return "", err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return "", err
	}
	gverifier, err := note.NewVerifier(gvkey)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "go")
	if err := os.MkdirAll(filepath.Join(out, "notes"), 0o755); err != nil {
		return "", err
	}
	for i, cp := range heads {
		text := fmt.Sprintf("%s\n%d\n%s\n", origin, cp.tree.N, base64.StdEncoding.EncodeToString(cp.tree.Hash[:]))
		if i%2 == 1 {
			text += "go-extension " + strconv.Itoa(i) + "\n"
		}
		msg, err := note.Sign(&note.Note{Text: text}, signer)
		if err != nil {
			return "", err
		}
		// Checked here too, then written for the Rust half.
		if _, err := openStrict(msg, gverifier, nil); err != nil {
			return "", fmt.Errorf("our own note: %v", err)
		}
		k, err := mutate(msg, rng, false, "Go note", func(m []byte) bool {
			_, err := openStrict(m, gverifier, nil)
			return err == nil
		})
		tried += k
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(out, "notes", fmt.Sprintf("%02d", i)), msg, 0o644); err != nil {
			return "", err
		}
	}
	files := map[string]string{"go.vkey": gvkey + "\n", "inclusion.txt": goIncl.String(), "consistency.txt": goCons.String()}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(out, name), []byte(body), 0o644); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("verified %d signed checkpoints over %d leaves (tiles authenticated by tlog.TileHashReader), %d inclusion and %d consistency proofs (equal to tlog.ProveRecord/ProveTree); %d single-byte changes all rejected (note.Open alone accepted %d of the note changes: in the witness cosignature line, which x/mod 0.7 cannot check, or non-zero base64 padding bits; the checker refuses them); signed %d notes",
		len(heads), size, len(incl), len(cons), tried, openAccepts, len(heads)), nil
}

// Package sbom writes a software bill of materials for the probe: an SPDX 2.3 JSON document that
// names each platform's binary (with its SHA-256) and what the Go linker put into it — the main
// module, every dependency module and the standard library of the Go release that compiled it — as
// the binary's own build information records them (debug/buildinfo). Nothing comes from go.mod or
// the network: the document describes the bytes that ship.
//
// The document is reproducible like the image: its creation time is the build's epoch
// (SOURCE_DATE_EPOCH), its namespace is derived from its content, and every list is sorted, so two
// builds of the same source give the same bytes.
package sbom

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Binary is one compiled program to describe.
type Binary struct {
	// Platform is os/arch, e.g. linux/amd64.
	Platform string
	// Content is the executable's bytes.
	Content []byte
}

// Options describe the document.
type Options struct {
	// Name of the program, e.g. health-check.
	Name string
	// Version stamped into the program. The build information cannot say it: the probe is built
	// with -buildvcs=false, so the main module's version there is "(devel)".
	Version string
	// Created is the document's creation time: the build's epoch, not the wall clock.
	Created time.Time
	// Creator names the tool that writes the document, e.g. build-image.
	Creator string
}

// SPDX JSON field names and values from the SPDX 2.3 specification
// (https://spdx.github.io/spdx-spec/v2.3/).
type document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      creationInfo   `json:"creationInfo"`
	Packages          []spdxPackage  `json:"packages"`
	Relationships     []relationship `json:"relationships"`
}

type creationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name             string        `json:"name"`
	SPDXID           string        `json:"SPDXID"`
	VersionInfo      string        `json:"versionInfo,omitempty"`
	DownloadLocation string        `json:"downloadLocation"`
	FilesAnalyzed    bool          `json:"filesAnalyzed"`
	Checksums        []checksum    `json:"checksums,omitempty"`
	LicenseConcluded string        `json:"licenseConcluded"`
	LicenseDeclared  string        `json:"licenseDeclared"`
	CopyrightText    string        `json:"copyrightText"`
	PrimaryPurpose   string        `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs     []externalRef `json:"externalRefs,omitempty"`
	Comment          string        `json:"comment,omitempty"`
}

type checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type externalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

const (
	documentID = "SPDXRef-DOCUMENT"
	// noAssertion is SPDX's "this document does not say": for where each module's source was
	// fetched from, and under which license it is.
	noAssertion = "NOASSERTION"
)

// SPDX returns the SPDX 2.3 JSON document describing binaries.
func SPDX(opts Options, binaries []Binary) ([]byte, error) {
	if len(binaries) == 0 {
		return nil, errors.New("sbom: no binaries to describe")
	}
	if opts.Name == "" || opts.Version == "" || opts.Creator == "" {
		return nil, errors.New("sbom: name, version and creator are required")
	}
	doc := document{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      documentID,
		Name:        opts.Name + "-" + opts.Version,
		CreationInfo: creationInfo{
			Created:  opts.Created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: " + opts.Creator},
		},
	}
	packages := packageSet{}
	var mainPath string
	for _, b := range binaries {
		info, err := buildinfo.Read(bytes.NewReader(b.Content))
		if err != nil {
			return nil, fmt.Errorf("sbom: read the build information of the %s binary: %w", b.Platform, err)
		}
		if mainPath != "" && info.Main.Path != mainPath {
			return nil, fmt.Errorf("sbom: binaries of different main modules: %s and %s", mainPath, info.Main.Path)
		}
		mainPath = info.Main.Path
		relationships, err := packages.addBinary(opts, b, info)
		if err != nil {
			return nil, err
		}
		doc.Relationships = append(doc.Relationships, relationships...)
	}
	for _, id := range slices.Sorted(maps.Keys(packages)) {
		doc.Packages = append(doc.Packages, packages[id])
	}
	slices.SortFunc(doc.Relationships, func(a, b relationship) int {
		return strings.Compare(a.Element+" "+a.Type+" "+a.Related, b.Element+" "+b.Type+" "+b.Related)
	})
	return doc.encode(mainPath)
}

// packageSet is the document's packages by SPDX ID: the platforms' binaries share their modules.
type packageSet map[string]spdxPackage

// add records p, once however many binaries contain it.
func (packages packageSet) add(p spdxPackage) error {
	// We record what the binary contains, not the licenses or copyrights of what it contains.
	p.LicenseConcluded, p.LicenseDeclared, p.CopyrightText = noAssertion, noAssertion, noAssertion
	if seen, ok := packages[p.SPDXID]; ok && seen.Name != p.Name {
		return fmt.Errorf("sbom: %s and %s map to the same SPDX ID %s", seen.Name, p.Name, p.SPDXID)
	}
	packages[p.SPDXID] = p
	return nil
}

// addBinary records the binary b, whose build information is info, and the modules it contains, and
// returns the relationships that say so: the document DESCRIBES the binary, which CONTAINS each module.
func (packages packageSet) addBinary(opts Options, b Binary, info *buildinfo.BuildInfo) ([]relationship, error) {
	sum := sha256.Sum256(b.Content)
	binary := spdxPackage{
		Name:             opts.Name + " (" + b.Platform + ")",
		SPDXID:           spdxID("Binary", opts.Name, b.Platform),
		VersionInfo:      opts.Version,
		DownloadLocation: noAssertion,
		Checksums:        []checksum{{Algorithm: "SHA256", Value: hex.EncodeToString(sum[:])}},
		PrimaryPurpose:   "APPLICATION",
		Comment:          "Built from " + info.Path + " with " + info.GoVersion + "; " + settings(info.Settings),
	}
	if err := packages.add(binary); err != nil {
		return nil, err
	}
	relationships := []relationship{{documentID, "DESCRIBES", binary.SPDXID}}
	contained := []spdxPackage{
		modulePackage(&debug.Module{Path: info.Main.Path, Version: opts.Version}),
		stdlibPackage(info.GoVersion),
	}
	for _, dep := range info.Deps {
		if dep.Replace != nil {
			dep = dep.Replace
		}
		contained = append(contained, modulePackage(dep))
	}
	for _, p := range contained {
		if err := packages.add(p); err != nil {
			return nil, err
		}
		relationships = append(relationships, relationship{binary.SPDXID, "CONTAINS", p.SPDXID})
	}
	return relationships, nil
}

// encode is the document as indented JSON, with its namespace. The namespace must be a URI unique to
// this document: a hash of everything else in it, under the main module's path, is unique for
// different content and the same for the same content.
func (doc document) encode(mainPath string) ([]byte, error) {
	content, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	contentSum := sha256.Sum256(content)
	doc.DocumentNamespace = "https://" + mainPath + "/spdx/" + doc.Name + "-" + hex.EncodeToString(contentSum[:])
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// modulePackage describes a Go module. Its go.sum hash (h1:) goes into the comment, not into
// checksums: it hashes a list of the module's files, not a file SPDX could name, so calling it a
// SHA256 checksum of the package would mislead a verifier.
func modulePackage(m *debug.Module) spdxPackage {
	p := spdxPackage{
		Name:             m.Path,
		SPDXID:           spdxID("GoModule", m.Path, m.Version),
		VersionInfo:      m.Version,
		DownloadLocation: noAssertion,
		PrimaryPurpose:   "LIBRARY",
	}
	if m.Version != "" {
		p.ExternalRefs = []externalRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/" + m.Path + "@" + m.Version}}
	}
	if m.Sum != "" {
		p.Comment = "go.sum hash: " + m.Sum
	}
	return p
}

// stdlibPackage describes the standard library of the Go release that compiled the binary, named
// as vulnerability databases name it (module "stdlib", version without the "go" prefix in the purl).
func stdlibPackage(goVersion string) spdxPackage {
	return spdxPackage{
		Name:             "stdlib",
		SPDXID:           spdxID("GoModule", "stdlib", goVersion),
		VersionInfo:      goVersion,
		DownloadLocation: noAssertion,
		PrimaryPurpose:   "LIBRARY",
		ExternalRefs: []externalRef{{
			"PACKAGE-MANAGER", "purl", "pkg:golang/stdlib@" + strings.TrimPrefix(goVersion, "go"),
		}},
	}
}

// settings renders the build settings (GOOS, GOARCH, -trimpath, -ldflags, ...) in the order the
// go command recorded them.
func settings(all []debug.BuildSetting) string {
	parts := make([]string, 0, len(all))
	for _, s := range all {
		parts = append(parts, s.Key+"="+s.Value)
	}
	return "build settings: " + strings.Join(parts, " ")
}

// notInIDString is everything SPDX does not allow in an SPDX ID after "SPDXRef-".
var notInIDString = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(kind string, parts ...string) string {
	return "SPDXRef-" + kind + "-" + notInIDString.ReplaceAllString(strings.Join(parts, "-"), "-")
}

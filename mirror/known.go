package mirror

import (
	"net/url"
	"strings"
)

// DockerHub is the name clients use for Docker Hub.
const DockerHub = "docker.io"

// knownRegistries maps the well-known public registries to the endpoint
// that serves their registry API.
var knownRegistries = map[string]string{
	DockerHub:           "https://registry-1.docker.io",
	"ghcr.io":           "https://ghcr.io",
	"quay.io":           "https://quay.io",
	"registry.k8s.io":   "https://registry.k8s.io",
	"gcr.io":            "https://gcr.io",
	"mcr.microsoft.com": "https://mcr.microsoft.com",
	"public.ecr.aws":    "https://public.ecr.aws",
	"nvcr.io":           "https://nvcr.io",
}

// registryAliases are other names clients use for a registry, such as the
// host names containerd puts in its ns parameter for Docker Hub.
var registryAliases = map[string]string{
	"registry-1.docker.io":    DockerHub,
	"index.docker.io":         DockerHub,
	"registry.hub.docker.com": DockerHub,
}

// KnownEndpoint returns the registry API endpoint of a well-known public
// registry, and whether name is one.
func KnownEndpoint(name string) (string, bool) {
	u, ok := knownRegistries[CanonicalRegistry(name)]
	return u, ok
}

// KnownRegistries returns the names of the well-known public registries,
// Docker Hub first.
func KnownRegistries() []string {
	return []string{DockerHub, "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io",
		"mcr.microsoft.com", "public.ecr.aws", "nvcr.io"}
}

// DefaultRegistry returns the upstream that serves requests naming no
// registry, as Config.Default documents it: configured (when not empty),
// else docker.io when it is among registries, else the first of them.
func DefaultRegistry(configured string, registries []string) string {
	if configured != "" {
		return CanonicalRegistry(configured)
	}
	for _, r := range registries {
		if CanonicalRegistry(r) == DockerHub {
			return DockerHub
		}
	}
	if len(registries) == 0 {
		return ""
	}
	return CanonicalRegistry(registries[0])
}

// CanonicalRegistry lower-cases a registry name and maps aliases (such as
// registry-1.docker.io) to the name regcache knows the registry by.
func CanonicalRegistry(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if alias, ok := registryAliases[name]; ok {
		return alias
	}
	return name
}

// RegistryOrigin returns the API host of the registry a name denotes (the
// host of its well-known endpoint, else the name itself, as in
// "registry.example:5000"), and false when the name is not a registry host
// name but a label of the operator's (one without a dot or port, other than
// localhost).
func RegistryOrigin(name string) (string, bool) {
	name = CanonicalRegistry(name)
	if known, ok := knownRegistries[name]; ok {
		u, err := url.Parse(known)
		if err != nil {
			return "", false
		}
		return u.Host, true
	}
	if name == "localhost" || strings.ContainsAny(name, ".:") {
		return name, true
	}
	return "", false
}

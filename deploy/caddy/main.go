// Command caddy is Caddy with its standard modules and regcache, as
// deploy/build.sh and deploy/build-image.sh build it (the same binary
// xcaddy would build).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// regcache's registry_cache handler, admin API and commands.
	_ "github.com/regcache/regcache"
)

func main() {
	caddycmd.Main()
}

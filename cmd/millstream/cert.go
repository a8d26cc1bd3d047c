package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/millstream/millstream/actors/admin"
	"github.com/millstream/millstream/internal/certs"
)

const certLong = `Makes the certificates of a secure gateway cluster, signed by the
cluster's own CA:

  cert ca             the CA: ca.crt (give it to every gateway and client)
                      and ca.key (keep it offline; it signs the rest)
  cert gateway NAME   gateway-NAME.crt/.key: the gateway's certificate for
                      the cluster link, the admin API and the MQTTS
                      listener; --host adds the names and addresses it is
                      reached at (NAME, localhost and 127.0.0.1 are in)
  cert admin NAME     admin-NAME.crt/.key: a client of the admin API with
                      role read (GET only) or operate (everything)
  cert device ID      device-ID.crt/.key: an MQTT client whose id is ID

Keys are written readable by their owner only; existing files are never
overwritten.`

const tokenLong = `Makes a bearer token for the admin API. The token is printed once: give it
to the client (Authorization: Bearer <token>). The gateway keeps only its
SHA-256: add the printed line to the file named by admin.tokens_file
(re-read within seconds of a change; delete the line to revoke it).`

func newCertCmd() *cobra.Command {
	c := groupCmd("cert", "Make the cluster CA and gateway, admin and device certificates", certLong)
	for _, sub := range []struct{ use, short string }{
		{"ca", "Make the cluster's CA (ca.crt, ca.key)"},
		{"gateway NAME", "Make a gateway's certificate (cluster link, admin API, MQTTS)"},
		{"admin NAME", "Make an admin API client certificate with --role read or operate"},
		{"device ID", "Make an MQTT client certificate for device ID"},
	} {
		c.AddCommand(newCertSubCmd(sub.use, sub.short))
	}
	return c
}

func newCertSubCmd(use, short string) *cobra.Command {
	sub, _, _ := strings.Cut(use, " ")
	c := &cobra.Command{Use: use, Short: short, Long: certLong, Args: nArgs(1, "cert "+sub+" needs one name")}
	if sub == "ca" {
		c.Args = nArgs(0, "cert ca takes no arguments")
	}
	var o certOptions
	c.Flags().StringVar(&o.dir, "dir", "certs", "directory of the CA and the certificates")
	c.Flags().IntVar(&o.days, "days", 0, "validity in days (default: 3650 for the CA, 365 for the others)")
	switch sub {
	case "gateway":
		c.Flags().StringArrayVar(&o.hosts, "host", nil, "a DNS name or IP address the gateway is reached at; repeatable")
	case "admin":
		addRoleFlag(c, &o.role, "read (GET only) or operate (everything)", admin.RoleRead, admin.RoleOperate)
	}
	c.RunE = func(c *cobra.Command, args []string) error {
		o.sub = sub
		if len(args) > 0 {
			o.name = args[0]
		}
		return makeCert(c.OutOrStdout(), o)
	}
	return c
}

// addRoleFlag adds --role, completed from roles.
func addRoleFlag(c *cobra.Command, role *string, usage string, roles ...string) {
	c.Flags().StringVar(role, "role", "", usage)
	_ = c.RegisterFlagCompletionFunc("role", cobra.FixedCompletions(roles, cobra.ShellCompDirectiveNoFileComp))
}

type certOptions struct {
	sub, name, dir, role string
	days                 int
	hosts                []string
}

func makeCert(stdout io.Writer, o certOptions) error {
	sub, name, dir, days, hosts, role := o.sub, o.name, o.dir, o.days, o.hosts, o.role
	if days < 0 {
		return fmt.Errorf("%w: --days must be positive", errUsage)
	}
	validity := time.Duration(days) * 24 * time.Hour
	if sub == "ca" {
		if validity == 0 {
			validity = 3650 * 24 * time.Hour
		}
		ca, err := certs.NewCA("Millstream cluster CA", validity)
		if err != nil {
			return err
		}
		f, err := ca.WriteCA(dir)
		if err != nil {
			return fmt.Errorf("cert ca: %w (a CA is there already? each cluster needs one CA only)", err)
		}
		fmt.Fprintf(stdout, "wrote %s and %s (valid until %s)\nkeep %s offline: whoever has it can make certificates the cluster trusts\n",
			f.Cert, f.Key, ca.Cert.NotAfter.Format(time.DateOnly), f.Key)
		return nil
	}
	req := certs.Request{Name: name, Hosts: hosts, Role: role, Validity: validity}
	switch sub {
	case "gateway":
		req.Kind = certs.Gateway
		if strings.Contains(name, "#") {
			return fmt.Errorf("%w: a gateway name holds no '#'", errUsage)
		}
	case "admin":
		req.Kind = certs.Admin
		if role != admin.RoleRead && role != admin.RoleOperate {
			return fmt.Errorf("%w: cert admin needs --role read or --role operate", errUsage)
		}
	case "device":
		req.Kind = certs.Device
		if strings.ContainsAny(name, "/+#\x00") {
			return fmt.Errorf("%w: device id %q: an MQTT client id used in topics holds no '/', '+', '#' or NUL", errUsage, name)
		}
	}
	ca, err := certs.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cert %s: no CA in %s: run 'millstream cert ca --dir %s' first (%w)", sub, dir, dir, err)
		}
		return fmt.Errorf("cert %s: %w", sub, err)
	}
	f, err := ca.WriteIssued(dir, sub+"-"+name, req)
	if err != nil {
		return fmt.Errorf("cert %s %s: %w", sub, name, err)
	}
	fmt.Fprintf(stdout, "wrote %s and %s, signed by %s\n", f.Cert, f.Key, filepath.Join(dir, "ca.crt"))
	switch sub {
	case "gateway":
		fmt.Fprintf(stdout, "gateway configuration:\n  admin: {tls: {cert_file: %s, key_file: %s, ca_file: %s}}\n", f.Cert, f.Key, filepath.Join(dir, "ca.crt"))
	case "admin":
		fmt.Fprintf(stdout, "role %s; for example: curl --cacert %s --cert %s --key %s https://GATEWAY:8080/v1/jobs\n",
			role, filepath.Join(dir, "ca.crt"), f.Cert, f.Key)
	}
	return nil
}

func newTokenCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "token NAME --role read|operate",
		Short: "Make a bearer token for the admin API",
		Long:  tokenLong,
		Args:  nArgs(1, "token needs one name"),
	}
	var role string
	addRoleFlag(c, &role, "read (GET only) or operate (everything)", admin.RoleRead, admin.RoleOperate)
	c.RunE = func(c *cobra.Command, args []string) error {
		return makeToken(c.OutOrStdout(), args[0], role)
	}
	return c
}

func makeToken(stdout io.Writer, name, role string) error {
	if role != admin.RoleRead && role != admin.RoleOperate {
		return fmt.Errorf("%w: token needs --role read or --role operate", errUsage)
	}
	if strings.ContainsAny(name, " \t\r\n#") {
		return fmt.Errorf("%w: token name %q: no spaces or '#' (it is a field of the tokens file)", errUsage, name)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	// A recognisable prefix lets secret scanners find leaked tokens.
	tok := "mst_" + base64.RawURLEncoding.EncodeToString(raw)
	fmt.Fprintf(stdout, "token (shown once; give it to %s): %s\nline for admin.tokens_file:\n%s %s %s\n", name, tok, name, role, admin.HashToken(tok))
	return nil
}

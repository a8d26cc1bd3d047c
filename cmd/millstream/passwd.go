package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/millstream/millstream/actors"
)

const passwdLong = `Makes a line for the embedded broker's password file (mqtt.password_file):
"USER ROLE <bcrypt hash>". The password is read from the first line of
standard input (never from the command line, where ps shows it); with
--generate a random one is made and printed once. Roles: device (USER is
the device id: it publishes under devices/USER/ only), reader (subscribes
to job outputs), admin (anything).`

func newPasswdCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "passwd USER --role device|reader|admin < password",
		Short: "Make a line of the embedded broker's password file",
		Long:  passwdLong,
		Args:  nArgs(1, "passwd needs one name"),
	}
	var role string
	addRoleFlag(c, &role, "device, reader or admin", "device", "reader", "admin")
	generate := c.Flags().Bool("generate", false, "make a random password and print it once")
	c.RunE = func(c *cobra.Command, args []string) error {
		return passwdLine(stdin, c.OutOrStdout(), args[0], role, *generate)
	}
	return c
}

// passwdLine prints the password file line of user, with the password
// read from the first line of stdin or generated.
func passwdLine(stdin io.Reader, stdout io.Writer, user, role string, generate bool) error {
	var password string
	if generate {
		raw := make([]byte, 18)
		if _, err := rand.Read(raw); err != nil {
			return fmt.Errorf("passwd: %w", err)
		}
		password = base64.RawURLEncoding.EncodeToString(raw)
	} else {
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("passwd: reading the password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
		if password == "" {
			return fmt.Errorf("%w: passwd reads the password from standard input (or use --generate)", errUsage)
		}
	}
	entry, err := actors.PasswordLine(user, role, password)
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	if generate {
		fmt.Fprintf(stdout, "password (shown once; give it to %s): %s\nline for mqtt.password_file:\n", user, password)
	}
	fmt.Fprintln(stdout, entry)
	return nil
}

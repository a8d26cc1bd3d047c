package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/millstream/millstream/actors"
)

const passwdHelp = `passwd USER --role device|reader|admin  < password

Makes a line for the embedded broker's password file (mqtt.password_file):
"USER ROLE <bcrypt hash>". The password is read from the first line of
standard input (never from the command line, where ps shows it); with
--generate a random one is made and printed once. Roles: device (USER is
the device id: it publishes under devices/USER/ only), reader (subscribes
to job outputs), admin (anything).`

func passwdCmd(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("passwd", stderr, passwdHelp)
	role := fs.String("role", "", "device, reader or admin")
	generate := fs.Bool("generate", false, "make a random password and print it once")
	user, err := nameAndFlags(fs, args, "passwd")
	if err != nil {
		return err
	}
	var password string
	if *generate {
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
	entry, err := actors.PasswordLine(user, *role, password)
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	if *generate {
		fmt.Fprintf(stdout, "password (shown once; give it to %s): %s\nline for mqtt.password_file:\n", user, password)
	}
	fmt.Fprintln(stdout, entry)
	return nil
}

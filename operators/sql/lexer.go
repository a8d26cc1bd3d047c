package sql

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TokenKind classifies tokens.
type TokenKind uint8

// Token kinds.
const (
	TokEOF TokenKind = iota
	TokIdent
	TokBracket // [name]
	TokQuoted  // "name"
	TokString  // 'text'
	TokNumber
	TokOp // punctuation and operators
)

func (k TokenKind) String() string {
	switch k {
	case TokEOF:
		return "end of query"
	case TokIdent, TokBracket, TokQuoted:
		return "identifier"
	case TokString:
		return "string"
	case TokNumber:
		return "number"
	}
	return "operator"
}

// Pos is a position in the query text, 1-based.
type Pos struct {
	Line, Col int
}

func (p Pos) String() string { return fmt.Sprintf("line %d, column %d", p.Line, p.Col) }

// Token is one lexical token.
type Token struct {
	Kind TokenKind
	Text string // identifier/string contents without quotes; operator text; number text
	Pos  Pos
}

func (t Token) describe() string {
	switch t.Kind {
	case TokEOF:
		return "the end of the query"
	case TokString:
		return fmt.Sprintf("string '%s'", t.Text)
	case TokBracket:
		return fmt.Sprintf("[%s]", t.Text)
	case TokQuoted:
		return fmt.Sprintf("%q", t.Text)
	}
	return fmt.Sprintf("'%s'", t.Text)
}

// MaxTokens bounds the tokens of one query. Lex keeps every token (40
// bytes each) before the parser runs, so without a bound a 1 MiB query of
// one-character tokens ("v+v+...") held about 100 MiB while it was
// refused, and eight such deploys at once took a gateway to 713 MiB
// (issue 13). A query of this many tokens is hundreds of kilobytes of SQL.
const MaxTokens = 100_000

// Lex splits a query into tokens, ending with an TokEOF token.
func Lex(src string) ([]Token, error) {
	l := lexer{src: src, line: 1, col: 1}
	if !utf8.ValidString(src) {
		for i := 0; i < len(src); {
			r, size := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && size == 1 {
				l.advance(i)
				return nil, l.errorf(Pos{l.line, l.col}, "the query is not valid UTF-8")
			}
			i += size
		}
	}
	var toks []Token
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		if t.Kind == TokEOF {
			return append(toks, t), nil
		}
		if len(toks) == MaxTokens {
			return nil, l.errorf(t.Pos, "the query has more than %d tokens", MaxTokens)
		}
		toks = append(toks, t)
	}
}

type lexer struct {
	src       string
	i         int
	line, col int
}

func (l *lexer) peekByte(off int) byte {
	if l.i+off < len(l.src) {
		return l.src[l.i+off]
	}
	return 0
}

// advance moves past n bytes, keeping line and column (in runes) current.
func (l *lexer) advance(n int) {
	end := l.i + n
	for l.i < end {
		r, size := utf8.DecodeRuneInString(l.src[l.i:])
		l.i += size
		if r == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
	}
}

func (l *lexer) errorf(p Pos, format string, args ...any) error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) next() (Token, error) {
	// Skip space and comments.
	for l.i < len(l.src) {
		c := l.src[l.i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			l.advance(1)
		case c == '-' && l.peekByte(1) == '-':
			for l.i < len(l.src) && l.src[l.i] != '\n' {
				l.advance(1)
			}
		case c == '/' && l.peekByte(1) == '*':
			p := Pos{l.line, l.col}
			end := strings.Index(l.src[l.i+2:], "*/")
			if end < 0 {
				return Token{}, l.errorf(p, "comment is not closed: add */")
			}
			l.advance(end + 4)
		default:
			r, _ := utf8.DecodeRuneInString(l.src[l.i:])
			if unicode.IsSpace(r) {
				l.advance(utf8.RuneLen(r))
				continue
			}
			return l.token()
		}
	}
	return Token{Kind: TokEOF, Pos: Pos{l.line, l.col}}, nil
}

func (l *lexer) token() (Token, error) {
	p := Pos{l.line, l.col}
	c := l.src[l.i]
	switch {
	case c == '\'':
		s, err := l.quoted('\'', p, "string")
		return Token{Kind: TokString, Text: s, Pos: p}, err
	case c == '"':
		s, err := l.quoted('"', p, "quoted name")
		return Token{Kind: TokQuoted, Text: s, Pos: p}, err
	case c == '[':
		s, err := l.quoted(']', p, "bracketed name")
		return Token{Kind: TokBracket, Text: s, Pos: p}, err
	case c >= '0' && c <= '9' || (c == '.' && l.peekByte(1) >= '0' && l.peekByte(1) <= '9'):
		start := l.i
		j := l.i
		for j < len(l.src) && l.src[j] >= '0' && l.src[j] <= '9' {
			j++
		}
		if j < len(l.src) && l.src[j] == '.' {
			j++
			for j < len(l.src) && l.src[j] >= '0' && l.src[j] <= '9' {
				j++
			}
		}
		if j < len(l.src) && (l.src[j] == 'e' || l.src[j] == 'E') {
			k := j + 1
			if k < len(l.src) && (l.src[k] == '+' || l.src[k] == '-') {
				k++
			}
			if k < len(l.src) && l.src[k] >= '0' && l.src[k] <= '9' {
				for k < len(l.src) && l.src[k] >= '0' && l.src[k] <= '9' {
					k++
				}
				j = k
			}
		}
		l.advance(j - start)
		return Token{Kind: TokNumber, Text: l.src[start:j], Pos: p}, nil
	case isIdentStart(c):
		start := l.i
		j := l.i
		for j < len(l.src) {
			r, size := utf8.DecodeRuneInString(l.src[j:])
			if !(r == '_' || r == '@' || r == '$' || r == '#' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
				break
			}
			j += size
		}
		l.advance(j - start)
		return Token{Kind: TokIdent, Text: l.src[start:j], Pos: p}, nil
	}
	for _, op := range []string{"<>", "!=", ">=", "<=", "!>", "!<"} {
		if strings.HasPrefix(l.src[l.i:], op) {
			l.advance(2)
			return Token{Kind: TokOp, Text: op, Pos: p}, nil
		}
	}
	if strings.IndexByte("(),.;*+-/%&|^~=<>{}?", c) >= 0 {
		l.advance(1)
		return Token{Kind: TokOp, Text: string(c), Pos: p}, nil
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.i:])
	if unicode.IsLetter(r) {
		return l.tokenIdentRune(p)
	}
	return Token{}, l.errorf(p, "unexpected character %q", r)
}

func (l *lexer) tokenIdentRune(p Pos) (Token, error) {
	start := l.i
	j := l.i
	for j < len(l.src) {
		r, size := utf8.DecodeRuneInString(l.src[j:])
		if !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			break
		}
		j += size
	}
	l.advance(j - start)
	return Token{Kind: TokIdent, Text: l.src[start:j], Pos: p}, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '@' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// quoted reads text up to the closing quote; a doubled closing quote is an
// escaped quote (as in T-SQL).
func (l *lexer) quoted(closer byte, p Pos, what string) (string, error) {
	var b strings.Builder
	j := l.i + 1
	for j < len(l.src) {
		if l.src[j] == closer {
			if j+1 < len(l.src) && l.src[j+1] == closer {
				b.WriteByte(closer)
				j += 2
				continue
			}
			l.advance(j + 1 - l.i)
			return b.String(), nil
		}
		b.WriteByte(l.src[j])
		j++
	}
	return "", l.errorf(p, "%s is not closed: add %c", what, closer)
}

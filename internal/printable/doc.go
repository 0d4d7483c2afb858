// Package printable writes text for a terminal: the control characters a
// path or a name may hold (an ESC that would start a colour or move the
// cursor, a newline that splits one message into two, a bidirectional
// override that shows the text after it reversed) and bytes that are no
// UTF-8, as escapes, so that a message shows the name as it is and the
// terminal does not act on it. The Python side's messages escape the same
// characters (python/src/dinoclip/_messages.py, printable). ShellArg
// writes a path as one shell word, for the commands messages suggest.
package printable

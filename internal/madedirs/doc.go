// Package madedirs makes the missing directories of a path and removes
// them again when what they were made for fails, leaving the file system
// as it was: a command that creates its output's parent directories and
// then fails should not leave them behind, empty.
package madedirs

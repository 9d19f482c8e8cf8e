// Command noop does nothing. Its cost is the cost of starting and ending a static Go process: the part
// of every Go probe's cost that no change to the probe's code can remove.
package main

func main() {}

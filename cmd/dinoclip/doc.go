// Command dinoclip trains and evaluates a projector from DINOv2 image
// features into CLIP's image-text embedding space.
package main

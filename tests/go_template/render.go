// Renders an Ollama Modelfile TEMPLATE with Go's own text/template, the engine
// Ollama uses, on the fields our templates read (.Messages with .Role/.Content,
// .System, .Prompt, .Suffix). Messages arrive already collated as Ollama does.
//
//   go run render.go < {"template": "...", "messages": [{"role": "user", "content": "..."}]}
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Values struct {
	Messages []Message
	System   string
	Prompt   string
	Suffix   string
}

func main() {
	var in struct {
		Template string    `json:"template"`
		Messages []Message `json:"messages"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("").Parse(in.Template))
	if err := tmpl.Execute(os.Stdout, Values{Messages: in.Messages}); err != nil {
		panic(err)
	}
}

package platform

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// oneRosterBase is where OneRoster 1.1 lives below UNTIS_API_URL (no /WebUntis prefix).
const oneRosterBase = "/ims/oneroster/v1p1"

// OneRoster roles the platform uses.
const (
	RoleStudent       = "student"
	RoleTeacher       = "teacher"
	RoleAdministrator = "administrator"
	RoleParent        = "parent"
	RoleAide          = "aide"
)

// GUIDRef is OneRoster's reference to another object.
type GUIDRef struct {
	Href      string `json:"href,omitempty"`
	SourcedID string `json:"sourcedId"`
	Type      string `json:"type"`
}

// User is a OneRoster 1.1 user, as far as the server uses it. On the Untis Platform SourcedID is
// the user's UUID, the SSO "sub".
type User struct {
	SourcedID        string    `json:"sourcedId"`
	Status           string    `json:"status"`
	DateLastModified string    `json:"dateLastModified"`
	Username         string    `json:"username"`
	EnabledUser      string    `json:"enabledUser"`
	GivenName        string    `json:"givenName"`
	FamilyName       string    `json:"familyName"`
	MiddleName       string    `json:"middleName"`
	Role             string    `json:"role"`
	Identifier       string    `json:"identifier"`
	Email            string    `json:"email"`
	Orgs             []GUIDRef `json:"orgs"`
	Grades           []string  `json:"grades"`
}

// Class is a OneRoster class: on the Untis Platform a WebUntis lesson (Unterricht); the
// WebUntis Klasse appears only in Metadata.
type Class struct {
	SourcedID        string         `json:"sourcedId"`
	Status           string         `json:"status"`
	DateLastModified string         `json:"dateLastModified"`
	Title            string         `json:"title"`
	ClassCode        string         `json:"classCode"`
	ClassType        string         `json:"classType"`
	Location         string         `json:"location"`
	Grades           []string       `json:"grades"`
	Subjects         []string       `json:"subjects"`
	School           GUIDRef        `json:"school"`
	Terms            []GUIDRef      `json:"terms"`
	Metadata         map[string]any `json:"metadata"`
}

// Enrollment links a user to a class.
type Enrollment struct {
	SourcedID        string  `json:"sourcedId"`
	Status           string  `json:"status"`
	DateLastModified string  `json:"dateLastModified"`
	User             GUIDRef `json:"user"`
	Class            GUIDRef `json:"class"`
	School           GUIDRef `json:"school"`
	Role             string  `json:"role"`
	Primary          string  `json:"primary"`
	BeginDate        string  `json:"beginDate"`
	EndDate          string  `json:"endDate"`
}

// Org is a OneRoster org; a school is an org of type "school".
type Org struct {
	SourcedID        string    `json:"sourcedId"`
	Status           string    `json:"status"`
	DateLastModified string    `json:"dateLastModified"`
	Name             string    `json:"name"`
	Type             string    `json:"type"`
	Identifier       string    `json:"identifier"`
	Parent           *GUIDRef  `json:"parent"`
	Children         []GUIDRef `json:"children"`
}

// ListOptions select and order a collection. The zero value lists everything in the platform's
// order, 100 per page.
type ListOptions struct {
	// Filter is a OneRoster 1.1 filter, e.g. role='teacher' or dateLastModified>'2025-09-01'.
	Filter string
	// Sort names the field to sort by; OrderBy is "asc" (default) or "desc".
	Sort, OrderBy string
	// PageSize is the limit of each page request; default 100, at most 1000. The iteration ends
	// on the first page shorter than this, so a larger size than the platform allows would end
	// it early: keep it at or below what the platform serves.
	PageSize int
}

// DefaultPageSize and MaxPageSize bound ListOptions.PageSize.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// maxPages stops a listing whose pages never run short (a platform that ignores offset).
const maxPages = 10_000

// ErrPagingStuck is returned when the platform serves the same page again for a new offset.
var ErrPagingStuck = errors.New("platform: the platform returned the same page for a new offset")

// User returns the user with the given sourcedId (the SSO sub).
func (cl Client) User(ctx context.Context, sourcedID string) (User, error) {
	return getOne[User](ctx, cl, "oneroster.users", "/users/", sourcedID, "user")
}

// Class returns one class (a WebUntis lesson).
func (cl Client) Class(ctx context.Context, sourcedID string) (Class, error) {
	return getOne[Class](ctx, cl, "oneroster.classes", "/classes/", sourcedID, "class")
}

// School returns one school.
func (cl Client) School(ctx context.Context, sourcedID string) (Org, error) {
	return getOne[Org](ctx, cl, "oneroster.schools", "/schools/", sourcedID, "org")
}

// Users lists the school's users.
func (cl Client) Users(ctx context.Context, opts ListOptions) iter.Seq2[User, error] {
	return list[User](ctx, cl, "oneroster.users", "/users", "users", opts)
}

// Students lists the school's students.
func (cl Client) Students(ctx context.Context, opts ListOptions) iter.Seq2[User, error] {
	return list[User](ctx, cl, "oneroster.students", "/students", "users", opts)
}

// Teachers lists the school's teachers.
func (cl Client) Teachers(ctx context.Context, opts ListOptions) iter.Seq2[User, error] {
	return list[User](ctx, cl, "oneroster.teachers", "/teachers", "users", opts)
}

// Classes lists the school's classes (WebUntis lessons).
func (cl Client) Classes(ctx context.Context, opts ListOptions) iter.Seq2[Class, error] {
	return list[Class](ctx, cl, "oneroster.classes", "/classes", "classes", opts)
}

// ClassStudents lists the students of a class.
func (cl Client) ClassStudents(ctx context.Context, classID string, opts ListOptions) iter.Seq2[User, error] {
	return listBelow[User](ctx, cl, "oneroster.classes.members", "/classes/", classID, "/students", "users", opts)
}

// ClassTeachers lists the teachers of a class.
func (cl Client) ClassTeachers(ctx context.Context, classID string, opts ListOptions) iter.Seq2[User, error] {
	return listBelow[User](ctx, cl, "oneroster.classes.members", "/classes/", classID, "/teachers", "users", opts)
}

// Enrollments lists the school's enrollments.
func (cl Client) Enrollments(ctx context.Context, opts ListOptions) iter.Seq2[Enrollment, error] {
	return list[Enrollment](ctx, cl, "oneroster.enrollments", "/enrollments", "enrollments", opts)
}

// Schools lists the schools the token sees (on the Untis Platform: the one school).
func (cl Client) Schools(ctx context.Context, opts ListOptions) iter.Seq2[Org, error] {
	return list[Org](ctx, cl, "oneroster.schools", "/schools", "orgs", opts)
}

// Collect gathers a listing into a slice, stopping at the first error.
func Collect[T any](seq iter.Seq2[T, error]) ([]T, error) {
	var out []T
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

// rosterObject is a pointer to a OneRoster object type, which knows its sourcedId.
type rosterObject[T any] interface {
	*T
	id() string
}

func (u *User) id() string       { return u.SourcedID }
func (c *Class) id() string      { return c.SourcedID }
func (e *Enrollment) id() string { return e.SourcedID }
func (o *Org) id() string        { return o.SourcedID }

// getOne fetches {"key": {...}} from collection/id.
func getOne[T any](ctx context.Context, cl Client, endpoint, collection, id, key string) (T, error) {
	var zero T
	path, err := objectPath(collection, id)
	if err != nil {
		return zero, err
	}
	var env map[string]*T
	if err := cl.GetJSON(ctx, endpoint, path, nil, &env); err != nil {
		return zero, err
	}
	v := env[key]
	if v == nil {
		return zero, &APIError{Kind: ErrUnavailable, TenantID: cl.tenantID, Method: http.MethodGet, Endpoint: endpoint,
			Path: path, Status: http.StatusOK, Err: fmt.Errorf("the response has no %q object", key)}
	}
	return *v, nil
}

func listBelow[T any, P rosterObject[T]](ctx context.Context, cl Client, endpoint, collection, id, sub, key string, opts ListOptions) iter.Seq2[T, error] {
	path, err := objectPath(collection, id)
	if err != nil {
		return func(yield func(T, error) bool) {
			var zero T
			yield(zero, err)
		}
	}
	return list[T, P](ctx, cl, endpoint, path[len(oneRosterBase):]+sub, key, opts)
}

// objectPath builds the path of one object, refusing ids that would change the path's meaning.
func objectPath(collection, id string) (string, error) {
	// Separators are refused, not escaped: a server that decodes %2F before resolving the path
	// would otherwise let an id climb out of the collection.
	if id == "" || id == "." || id == ".." || len(id) > 256 || strings.ContainsAny(id, "/\\") {
		return "", fmt.Errorf("%w: %q is not a OneRoster sourcedId", ErrBadRequest, id)
	}
	return oneRosterBase + collection + url.PathEscape(id), nil
}

// list walks a collection page by page (limit/offset) and ends on the first short page: the
// platform sends no total count.
func list[T any, P rosterObject[T]](ctx context.Context, cl Client, endpoint, collection, key string, opts ListOptions) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		size := opts.PageSize
		switch {
		case size <= 0:
			size = DefaultPageSize
		case size > MaxPageSize:
			size = MaxPageSize
		}
		q := url.Values{}
		if opts.Filter != "" {
			q.Set("filter", opts.Filter)
		}
		if opts.Sort != "" {
			q.Set("sort", opts.Sort)
			if opts.OrderBy != "" {
				q.Set("orderBy", opts.OrderBy)
			}
		}
		q.Set("limit", strconv.Itoa(size))
		path := oneRosterBase + collection
		prevFirst := ""
		offset := 0
		for page := 0; page < maxPages; page++ {
			q.Set("offset", strconv.Itoa(offset))
			var env map[string][]T
			if err := cl.GetJSON(ctx, endpoint, path, q, &env); err != nil {
				yield(zero, err)
				return
			}
			items := env[key]
			if page > 0 && len(items) > 0 && P(&items[0]).id() == prevFirst {
				yield(zero, fmt.Errorf("%w (%s, offset %d)", ErrPagingStuck, path, offset))
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if len(items) < size {
				return
			}
			prevFirst = P(&items[0]).id()
			// A platform that serves more than the limit asked for is followed where it
			// left off, not at offset+limit, so no object comes twice.
			offset += len(items)
		}
		yield(zero, fmt.Errorf("platform: %s: more than %d pages", path, maxPages))
	}
}
